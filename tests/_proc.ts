// Reading a process's memory from /proc, for tests that bound the server's memory use.

/**
 * The resident memory (VmRSS) of process `pid`, in KiB, from `/proc/<pid>/status`.
 * Deno lets only --allow-all read /proc directly, so `cat` reads it (tests run with --allow-run).
 */
export async function rssKiB(pid: number): Promise<number> {
  const { success, stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stderr: "null" }).output();
  if (!success) throw new Error(`Cannot read /proc/${pid}/status`);
  const match = new TextDecoder().decode(stdout).match(/^VmRSS:\s+(\d+) kB$/m);
  if (!match) throw new Error(`No VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** Samples `rssKiB(pid)` every `intervalMs` until `stop()`; `stop()` resolves to the highest value seen. */
export function sampleRss(pid: number, intervalMs = 50): { stop(): Promise<number> } {
  let running = true;
  let peak = 0;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await rssKiB(pid));
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** CPU time (user + system) process `pid` has used so far, in milliseconds, from `/proc/<pid>/stat`. */
export async function cpuMs(pid: number): Promise<number> {
  const { success, stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stderr: "null" }).output();
  if (!success) throw new Error(`Cannot read /proc/${pid}/stat`);
  // The command name, in parentheses, may hold spaces: the fields that follow are counted from its end.
  const text = new TextDecoder().decode(stdout);
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks * 10; // 100 ticks a second on Linux
}

/** How many TCP sockets on local port `port` are in CLOSE-WAIT (the peer closed, this side has not), by `ss`. */
export async function closeWaitSockets(port: number): Promise<number> {
  const { success, stdout } = await new Deno.Command("ss", {
    args: ["-tanH", "state", "close-wait", `( sport = :${port} )`],
    stderr: "null",
  }).output();
  if (!success) throw new Error("Cannot run ss");
  return new TextDecoder().decode(stdout).split("\n").filter((line) => line.trim() !== "").length;
}
