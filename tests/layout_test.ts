// The project's layout as the module graph shows it: the server and the handlers meet only in
// exchange/ (main.ts wires them), and no module imports itself through others, not even for types.
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "./_server.ts";

interface ModuleInfo {
  specifier: string;
  dependencies?: Array<{ code?: { specifier: string }; type?: { specifier: string } }>;
}

/** The project's own modules reachable from `entries`, each with the project modules it imports. */
async function graph(...entries: string[]): Promise<Map<string, Set<string>>> {
  const root = new URL(`file://${PROJECT_ROOT}`).href;
  const edges = new Map<string, Set<string>>();
  for (const entry of entries) {
    const { success, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: PROJECT_ROOT,
      stderr: "null",
    }).output();
    assert.ok(success, `deno info ${entry} failed`);
    const { modules } = JSON.parse(new TextDecoder().decode(stdout)) as { modules: ModuleInfo[] };
    for (const module of modules) {
      if (!module.specifier.startsWith(root)) continue;
      const from = module.specifier.slice(root.length);
      const to = edges.get(from) ?? new Set<string>();
      for (const dependency of module.dependencies ?? []) {
        for (const target of [dependency.code, dependency.type]) {
          if (target?.specifier.startsWith(root)) to.add(target.specifier.slice(root.length));
        }
      }
      edges.set(from, to);
    }
  }
  return edges;
}

const GRAPH = await graph("main.ts", "handlers/worker.ts");

Deno.test("server/ imports nothing from handlers/, and handlers/ nothing from server/", () => {
  const crossings = [...GRAPH].flatMap(([from, to]) =>
    [...to].filter((target) =>
      (from.startsWith("server/") && target.startsWith("handlers/")) ||
      (from.startsWith("handlers/") && target.startsWith("server/"))
    ).map((target) => `${from} -> ${target}`)
  );
  assert.deepEqual(crossings, []);
  // The check sees the graph: main.ts reaches both sides.
  assert.ok(GRAPH.get("main.ts")?.has("server/mod.ts"));
  assert.ok(GRAPH.has("handlers/job.ts") && GRAPH.has("exchange/codec.ts"));
});

Deno.test("no module imports itself through others, not even for types", () => {
  const cycles: string[] = [];
  const visit = (node: string, path: string[]) => {
    for (const next of GRAPH.get(node) ?? []) {
      const at = path.indexOf(next);
      if (at !== -1) cycles.push([...path.slice(at), next].join(" -> "));
      else visit(next, [...path, next]);
    }
  };
  for (const node of GRAPH.keys()) visit(node, [node]);
  assert.deepEqual(cycles, []);
});
