// A strict reader of the Prometheus text exposition format, version 0.0.4, for the admin tests:
// it throws on anything the format does not allow, so a test that reads /metrics checks its syntax.

/** One sample: a metric name, its labels, its value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A metric family: its HELP, its TYPE and its samples. */
export interface Family {
  help: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/.test(text)) {
    throw new SyntaxError(`bad value ${JSON.stringify(text)} in ${JSON.stringify(line)}`);
  }
  return Number(text);
}

// labels = "{" [ name "=" quoted { "," name "=" quoted } [ "," ] ] "}"; quoted escapes \\ \" \n only.
function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let at = 0;
  while (at < text.length) {
    const eq = text.indexOf("=", at);
    if (eq === -1) throw new SyntaxError(`bad labels in ${JSON.stringify(line)}`);
    const name = text.slice(at, eq);
    if (!LABEL_NAME.test(name) || name in labels) throw new SyntaxError(`bad label name in ${JSON.stringify(line)}`);
    if (text[eq + 1] !== '"') throw new SyntaxError(`unquoted label value in ${JSON.stringify(line)}`);
    let value = "";
    let i = eq + 2;
    for (;; i++) {
      if (i >= text.length) throw new SyntaxError(`unterminated label value in ${JSON.stringify(line)}`);
      const c = text[i];
      if (c === '"') break;
      if (c === "\\") {
        const next = text[++i];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else throw new SyntaxError(`bad escape in ${JSON.stringify(line)}`);
      } else {
        value += c;
      }
    }
    labels[name] = value;
    at = i + 1;
    if (text[at] === ",") at++;
    else if (at !== text.length) throw new SyntaxError(`bad label separator in ${JSON.stringify(line)}`);
  }
  return labels;
}

// The family a sample belongs to: its own name, or a histogram's or summary's base name.
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  if (families.has(name)) return families.get(name);
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const family = families.get(name.slice(0, -suffix.length));
    if (family && (family.type === "histogram" || family.type === "summary")) return family;
  }
  return undefined;
}

/** Parses a whole exposition; every sample must follow its family's HELP and TYPE. */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const pendingHelp = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) continue; // a plain comment
      const [, kind, name, rest] = match;
      if (!NAME.test(name)) throw new SyntaxError(`bad metric name in ${JSON.stringify(line)}`);
      if (kind === "HELP") {
        pendingHelp.set(name, rest);
      } else {
        if (!TYPES.has(rest)) throw new SyntaxError(`bad type in ${JSON.stringify(line)}`);
        if (families.has(name)) throw new SyntaxError(`second TYPE for ${name}`);
        const help = pendingHelp.get(name);
        if (help === undefined) throw new SyntaxError(`TYPE before HELP for ${name}`);
        families.set(name, { help, type: rest as Family["type"], samples: [] });
      }
      continue;
    }
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?[0-9]+))?$/.exec(line);
    if (!match) throw new SyntaxError(`bad sample line ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = match;
    const family = familyOf(name, families);
    if (!family) throw new SyntaxError(`sample of ${name} without HELP and TYPE`);
    family.samples.push({
      name,
      labels: labelText ? parseLabels(labelText, line) : {},
      value: parseValue(valueText, line),
    });
  }
  for (const [name, family] of families) {
    if (family.type !== "histogram") continue;
    // Buckets: le ascending, counts cumulative, +Inf last and equal to _count.
    const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
    const count = family.samples.find((s) => s.name === `${name}_count`);
    if (buckets.length === 0 || !count || !family.samples.some((s) => s.name === `${name}_sum`)) {
      throw new SyntaxError(`histogram ${name} lacks buckets, _sum or _count`);
    }
    let previous = { le: -Infinity, value: 0 };
    for (const bucket of buckets) {
      const le = parseValue(bucket.labels.le ?? "", `le of ${name}`);
      if (le <= previous.le || bucket.value < previous.value) throw new SyntaxError(`histogram ${name} out of order`);
      previous = { le, value: bucket.value };
    }
    if (previous.le !== Infinity || previous.value !== count.value) {
      throw new SyntaxError(`histogram ${name}: +Inf bucket missing or not equal to _count`);
    }
  }
  return families;
}

/** The value of the one sample named `name` with exactly `labels`; throws when there is none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      const keys = Object.keys(sample.labels);
      if (keys.length === Object.keys(labels).length && keys.every((key) => sample.labels[key] === labels[key])) {
        return sample.value;
      }
    }
  }
  throw new Error(`no sample ${name}${JSON.stringify(labels)}`);
}
