// End to end: the static file server (`--root`, built-in app), over raw sockets to a real server process.
import assert from "node:assert/strict";
import { assertHello, type Response1 } from "./_server.ts";
import {
  bin,
  describe,
  exchange,
  fetchRaw,
  HELLO,
  NOT_FOUND,
  openSite,
  parseByteRanges,
  req,
  writeFiles,
} from "./_static.ts";

const encoder = new TextEncoder();
const HTML_TYPE = "text/html; charset=utf-8";

function assertFile(response: Response1, expected: string | Uint8Array, what: string): void {
  const bytes = typeof expected === "string" ? encoder.encode(expected) : expected;
  assert.equal(response.status, 200, `${what}: ${describe(response)}`);
  assert.equal(bin(response.body), bin(bytes), `${what}: body`);
  assert.equal(response.headers.get("content-length"), String(bytes.length), `${what}: Content-Length`);
  assert.equal(response.headers.get("x-content-type-options"), "nosniff", `${what}: X-Content-Type-Options`);
}

function assertNotFound(response: Response1, what: string): void {
  assert.equal(response.status, 404, `${what}: ${describe(response)}`);
  assert.equal(bin(response.body), bin(NOT_FOUND), `${what}: body is 404.html`);
}

// ---------------------------------------------------------------------------------------------
// The built-in routes and plain files

Deno.test("with --root, GET / still answers hello.html and an unknown path still answers 404.html", async () => {
  await using site = await openSite({ files: { "a.txt": "A" } });
  const [root, head, missing] = await exchange(site.port, [req("GET", "/"), req("HEAD", "/"), req("GET", "/nope")], [
    false,
    true,
  ]);
  assert.equal(root.status, 200, describe(root));
  assertHello(new TextDecoder().decode(root.body));
  assert.equal(root.headers.get("content-type"), HTML_TYPE);
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assertNotFound(missing, "GET /nope");
  assert.equal(missing.headers.get("content-type"), HTML_TYPE);
});

Deno.test("with --root, GET /sleep still blocks its worker for five seconds, then answers hello.html", async () => {
  await using site = await openSite();
  const start = performance.now();
  const response = await fetchRaw(site.port, req("GET", "/sleep"), { timeoutMs: 15_000 });
  const elapsed = performance.now() - start;
  assert.equal(response.status, 200, describe(response));
  assertHello(new TextDecoder().decode(response.body));
  assert.ok(elapsed >= 4500, `/sleep answered after ${elapsed} ms`);
});

Deno.test("a file under the root is served with its exact bytes, Content-Length and nosniff", async () => {
  const binary = new Uint8Array(256).map((_, i) => i);
  await using site = await openSite({
    files: { "a.txt": "alpha\n", "sub/deeper/b.txt": "bravo\n", "bytes.bin": binary },
  });
  assertFile(await fetchRaw(site.port, req("GET", "/a.txt")), "alpha\n", "/a.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/sub/deeper/b.txt")), "bravo\n", "/sub/deeper/b.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/bytes.bin")), binary, "/bytes.bin");
  assertFile(await fetchRaw(site.port, req("GET", "/a.txt?v=1")), "alpha\n", "/a.txt?v=1 (query ignored)");
  assertFile(await fetchRaw(site.port, req("GET", "/hello.html")), HELLO, "/hello.html");
});

Deno.test("HEAD on a file answers the GET headers without a body", async () => {
  await using site = await openSite({ files: { "a.txt": "alpha\n" } });
  const [get] = await exchange(site.port, [req("GET", "/a.txt")]);
  // The 404 after the HEAD proves no body bytes followed the HEAD response.
  const [head, next] = await exchange(site.port, [req("HEAD", "/a.txt"), req("GET", "/nope")], [true, false]);
  assert.equal(head.status, 200, describe(head));
  for (const name of ["content-type", "content-length", "etag", "last-modified", "x-content-type-options"]) {
    assert.equal(head.headers.get(name), get.headers.get(name), name);
  }
  assert.equal(head.headers.get("content-length"), "6");
  assertNotFound(next, "GET /nope after HEAD");
});

Deno.test("a missing file answers 404 with 404.html", async () => {
  await using site = await openSite({ files: { "a.txt": "A", "sub/b.txt": "B" } });
  for (const path of ["/missing.txt", "/sub/missing.txt", "/nodir/x.txt", "/a.txt/x", "/A.TXT"]) {
    assertNotFound(await fetchRaw(site.port, req("GET", path)), path);
  }
});

Deno.test("percent-encoded names are decoded: spaces, UTF-8 and encoded letters", async () => {
  await using site = await openSite({ files: { "a b.txt": "space", "café.txt": "utf8", "a.txt": "plain" } });
  assertFile(await fetchRaw(site.port, req("GET", "/a%20b.txt")), "space", "/a%20b.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/caf%C3%A9.txt")), "utf8", "/caf%C3%A9.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/caf%c3%a9.txt")), "utf8", "/caf%c3%a9.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/%61.txt")), "plain", "/%61.txt");
});

Deno.test("a file path with a trailing slash is not a folder and answers 404", async () => {
  await using site = await openSite({ files: { "a.txt": "alpha", "sub/b.txt": "bravo" } });
  for (const path of ["/a.txt/", "/sub/b.txt/", "/a.txt/."]) {
    assertNotFound(await fetchRaw(site.port, req("GET", path)), path);
  }
});

Deno.test("a large file is sent whole, by range and by HEAD, and the connection stays usable", async () => {
  const big = new Uint8Array(300_000).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
  await using site = await openSite({ files: { "big.bin": big } });
  const [whole, range, suffix, head, after] = await exchange(site.port, [
    req("GET", "/big.bin"),
    req("GET", "/big.bin", "Range: bytes=100000-200000\r\n"),
    req("GET", "/big.bin", "Range: bytes=-70000\r\n"),
    req("HEAD", "/big.bin"),
    req("GET", "/nope"),
  ], [false, false, false, true, false]);
  assert.equal(whole.status, 200, describe(whole));
  assert.equal(whole.headers.get("content-length"), "300000");
  assert.ok(whole.body.length === big.length && whole.body.every((b, i) => b === big[i]), "whole file differs");
  assert.equal(range.status, 206, describe(range));
  assert.equal(range.headers.get("content-range"), "bytes 100000-200000/300000");
  assert.equal(range.headers.get("content-length"), "100001");
  assert.ok(range.body.every((b, i) => b === big[100_000 + i]), "range bytes differ");
  assert.equal(suffix.headers.get("content-range"), "bytes 230000-299999/300000");
  assert.ok(suffix.body.length === 70_000 && suffix.body.every((b, i) => b === big[230_000 + i]), "suffix differs");
  assert.equal(head.status, 200, describe(head));
  assert.equal(head.headers.get("content-length"), "300000");
  assertNotFound(after, "GET /nope after the large responses");
});

Deno.test("a changed file is served fresh, with a new ETag and Last-Modified", async () => {
  await using site = await openSite({ files: { "a.txt": "version one" } });
  const first = await fetchRaw(site.port, req("GET", "/a.txt"));
  const oldEtag = first.headers.get("etag") ?? "";
  assert.ok(oldEtag, describe(first));
  await Deno.writeTextFile(`${site.root}/a.txt`, "version two");
  const later = new Date(Date.now() + 60_000);
  await Deno.utime(`${site.root}/a.txt`, later, later);
  const second = await fetchRaw(site.port, req("GET", "/a.txt", `If-None-Match: ${oldEtag}\r\n`));
  assertFile(second, "version two", "after the change, with the old ETag");
  assert.notEqual(second.headers.get("etag"), oldEtag);
  assert.equal(second.headers.get("last-modified"), later.toUTCString());
});

Deno.test("a FIFO under the root answers 404 at once instead of blocking a worker", async () => {
  let made = false;
  await using site = await openSite({
    files: { "a.txt": "A" },
    setup: async ({ root }) => {
      try {
        made = (await new Deno.Command("mkfifo", { args: [`${root}/pipe.txt`] }).output()).success;
      } catch {
        made = false;
      }
    },
  });
  // mkfifo is part of coreutils: a machine without it cannot run this suite as intended.
  assert.ok(made, "mkfifo could not make a FIFO");
  assertNotFound(await fetchRaw(site.port, req("GET", "/pipe.txt"), { timeoutMs: 5000 }), "/pipe.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/a.txt")), "A", "/a.txt after the FIFO");
});

// ---------------------------------------------------------------------------------------------
// Paths: decoding, normalising, staying inside the root

Deno.test("a .. that stays inside the root is resolved and serves the file", async () => {
  await using site = await openSite({ files: { "a.txt": "inside", "sub/x.txt": "x" } });
  for (
    const target of [
      "/sub/../a.txt",
      "/sub/./../a.txt",
      "/./a.txt",
      "/sub/x/../../a.txt",
      "/sub/%2e%2e/a.txt",
      "/sub/%2E%2E/a.txt",
      "http://127.0.0.1/sub/../a.txt",
      "http://x/a.txt",
    ]
  ) {
    assertFile(await fetchRaw(site.port, req("GET", target)), "inside", target);
  }
});

Deno.test("invalid percent-encoding, bad UTF-8, NUL, backslashes and encoded slashes answer 400", async () => {
  await using site = await openSite({ files: { "a.txt": "A", "sub/a.txt": "SA", "a\\b": "backslash" } });
  const targets = [
    "/%zz",
    "/a%2",
    "/a%",
    "/%g0.txt",
    "/%c0%ae", // overlong "."
    "/%e0%80%ae", // overlong "."
    "/%c0%af", // overlong "/"
    "/%ff.txt", // never valid in UTF-8
    "/%c3.txt", // truncated sequence
    "/%ed%a0%80.txt", // UTF-16 surrogate
    "/a.txt%00",
    "/a%00.txt",
    "/a\\b",
    "/a%5cb",
    "/a%5Cb",
    "/sub%2fa.txt",
    "/sub%2Fa.txt",
  ];
  for (const target of targets) {
    const response = await fetchRaw(site.port, req("GET", target));
    assert.equal(response.status, 400, `GET ${target}: ${describe(response)}`);
  }
});

Deno.test("a .. that would climb above the root answers 400, in origin form and absolute form", async () => {
  await using site = await openSite({ files: { "a.txt": "A" } });
  const targets = [
    "/..",
    "/../",
    "/../a.txt",
    "/sub/../../a.txt",
    "/%2e%2e/a.txt",
    "/./../a.txt",
    "http://x/../../etc/passwd",
    "http://127.0.0.1/%2e%2e/a.txt",
  ];
  for (const target of targets) {
    const response = await fetchRaw(site.port, req("GET", target));
    assert.equal(response.status, 400, `GET ${target}: ${describe(response)}`);
  }
});

Deno.test("no traversal attempt reaches a file outside the root, and the server keeps answering", async () => {
  const secret = `outside-secret-${crypto.randomUUID()}`;
  const sibling = `sibling-secret-${crypto.randomUUID()}`;
  await using site = await openSite({
    files: { "a.txt": "A", "sub/x.txt": "X" },
    setup: async ({ parent }) => {
      // A secret beside the root, and one in `<root>-evil`, whose path starts with the root's path.
      await writeFiles(parent, { "secret.txt": secret, "root-evil/secret.txt": sibling });
    },
  });
  const parent = site.parent;
  const corpus = [
    "/../secret.txt",
    "/../../secret.txt",
    "/../root-evil/secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2e%2E/secret.txt",
    "/.%2e/secret.txt",
    "/%2e./secret.txt",
    "/%2e%2e/root-evil/secret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%252fsecret.txt",
    "/....//secret.txt",
    "/....//....//secret.txt",
    "/..%2fsecret.txt",
    "/..%2Fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2froot-evil%2fsecret.txt",
    "/%2e%2e%5csecret.txt",
    "/..%5csecret.txt",
    "/..\\secret.txt",
    "/\\..\\secret.txt",
    "/sub\\..\\..\\secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%e0%80%ae%e0%80%ae/secret.txt",
    "/..%c0%afsecret.txt",
    "/..%c1%9csecret.txt",
    "/%u002e%u002e/secret.txt",
    "/../secret.txt%00.html",
    "/%00/../secret.txt",
    "/%2e%2e%00/secret.txt",
    "//etc/passwd",
    "/etc/passwd",
    "/./../secret.txt",
    "/sub/../../secret.txt",
    "/sub/./../../secret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/a/b/c/d/../../../../../secret.txt",
    "/.%2e/.%2e/secret.txt",
    `/${"../".repeat(40)}etc/passwd`,
    `/${"%2e%2e/".repeat(40)}etc/passwd`,
    `/${"..%2f".repeat(40)}etc%2fpasswd`,
    `/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd`,
    `${parent}/secret.txt`,
    `/${parent}/secret.txt`,
    `/${encodeURIComponent(`${parent}/secret.txt`)}`,
    `/../..${parent}/secret.txt`,
    "http://x/../secret.txt",
    "http://x/%2e%2e/secret.txt",
    "http://127.0.0.1/../../etc/passwd",
    "http://x/..%2fsecret.txt",
    `http://x${parent}/secret.txt`,
    "/../secret.txt?",
    "/../secret.txt?x=/hello.html",
    "/../secret.txt#",
    "/%3f/../../secret.txt",
    "/%23/../../secret.txt",
    "/..%3f/secret.txt",
    "/..;/secret.txt",
    "/sub/..;/..;/secret.txt",
    "/%ef%bc%8e%ef%bc%8e/secret.txt",
  ];
  assert.ok(corpus.length >= 30);
  const failures: string[] = [];
  for (const target of corpus) {
    for (const method of ["GET", "HEAD"]) {
      let response: Response1;
      try {
        response = await fetchRaw(site.port, req(method, target), { head: method === "HEAD" });
      } catch (error) {
        failures.push(`${method} ${target}: no response (${error})`);
        continue;
      }
      const text = bin(response.body);
      if (
        response.status === 200 || text.includes(secret) || text.includes(sibling) || /root:.*:0:0:/.test(text)
      ) {
        failures.push(`${method} ${target}: ${describe(response)}`);
      }
    }
  }
  assert.deepEqual(failures, [], `Traversal attempts that got through:\n${failures.join("\n")}`);
  const after = await fetchRaw(site.port, req("GET", "/"));
  assert.equal(after.status, 200, describe(after));
  assertHello(new TextDecoder().decode(after.body));
});

// ---------------------------------------------------------------------------------------------
// Symlinks

Deno.test("a symlink inside the root to a file outside it answers 404, never the target", async () => {
  const secret = `symlinked-secret-${crypto.randomUUID()}`;
  await using site = await openSite({
    setup: async ({ parent, root }) => {
      // `<root>-evil` starts with the root's path: a bare prefix check would let it through.
      await writeFiles(parent, { "secret.txt": secret, "root-evil/secret.txt": secret });
      await Deno.symlink(`${parent}/secret.txt`, `${root}/absolute-link.txt`);
      await Deno.symlink(`${root}-evil/secret.txt`, `${root}/sibling-link.txt`);
      await Deno.symlink("../secret.txt", `${root}/relative-link.txt`);
      await Deno.mkdir(`${root}/sub`);
      await Deno.symlink("../../secret.txt", `${root}/sub/relative-link.txt`);
    },
  });
  for (const path of ["/absolute-link.txt", "/sibling-link.txt", "/relative-link.txt", "/sub/relative-link.txt"]) {
    const response = await fetchRaw(site.port, req("GET", path));
    assert.ok(!bin(response.body).includes(secret), `GET ${path} leaked the target: ${describe(response)}`);
    assertNotFound(response, path);
  }
});

Deno.test("a symlink inside the root to a directory outside it answers 404, never its contents", async () => {
  const secret = `dir-secret-${crypto.randomUUID()}`;
  await using site = await openSite({
    setup: async ({ parent, root }) => {
      await writeFiles(parent, { "outside/secret.txt": secret, "outside/index.html": secret });
      await Deno.symlink(`${parent}/outside`, `${root}/linkdir`);
      await Deno.symlink("../outside", `${root}/rellinkdir`);
      await writeFiles(parent, { "root-evil/secret.txt": secret });
      await Deno.symlink(`${root}-evil`, `${root}/siblingdir`);
    },
  });
  for (
    const path of [
      "/linkdir/secret.txt",
      "/linkdir/index.html",
      "/linkdir/",
      "/linkdir",
      "/rellinkdir/secret.txt",
      "/rellinkdir/",
      "/siblingdir/secret.txt",
    ]
  ) {
    const response = await fetchRaw(site.port, req("GET", path));
    assert.ok(!bin(response.body).includes(secret), `GET ${path} leaked the target: ${describe(response)}`);
    assertNotFound(response, path);
  }
});

Deno.test("a symlinked index.html or precompressed variant that leads outside the root is never served", async () => {
  const secret = `variant-secret-${crypto.randomUUID()}`;
  await using site = await openSite({
    files: { "app.js": "plain js" },
    args: ["--dir-listing"],
    setup: async ({ parent, root }) => {
      await writeFiles(parent, { "secret.txt": secret });
      await Deno.symlink(`${parent}/secret.txt`, `${root}/app.js.br`);
      await Deno.symlink(`${parent}/secret.txt`, `${root}/app.js.gz`);
      await Deno.mkdir(`${root}/docs`);
      await Deno.symlink(`${parent}/secret.txt`, `${root}/docs/index.html`);
    },
  });
  for (
    const raw of [
      req("GET", "/app.js", "Accept-Encoding: br\r\n"),
      req("GET", "/app.js", "Accept-Encoding: gzip\r\n"),
      req("GET", "/app.js.br"),
      req("GET", "/docs/"),
      req("GET", "/docs/index.html"),
    ]
  ) {
    const response = await fetchRaw(site.port, raw);
    assert.ok(!bin(response.body).includes(secret), `${raw.split("\r\n")[0]} leaked: ${describe(response)}`);
  }
  const plainJs = await fetchRaw(site.port, req("GET", "/app.js", "Accept-Encoding: br, gzip\r\n"));
  assertFile(plainJs, "plain js", "/app.js whose variants lead outside");
});

Deno.test("a symlink inside the root to a file inside the root is served", async () => {
  await using site = await openSite({
    files: { "real.txt": "the real file", "sub/other.txt": "other" },
    setup: async ({ root }) => {
      await Deno.symlink("real.txt", `${root}/link.txt`);
      await Deno.symlink(`${root}/sub/other.txt`, `${root}/abs-link.txt`);
    },
  });
  assertFile(await fetchRaw(site.port, req("GET", "/link.txt")), "the real file", "/link.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/abs-link.txt")), "other", "/abs-link.txt");
});

// ---------------------------------------------------------------------------------------------
// Dotfiles

const DOTFILES = { ".env": "SECRET=env", ".hidden/x.txt": "hidden x", "sub/.secret": "sub secret" };

Deno.test("dotfiles and files in dot-folders answer 404 by default", async () => {
  await using site = await openSite({ files: DOTFILES });
  for (const path of ["/.env", "/.hidden/x.txt", "/sub/.secret", "/%2eenv", "/sub/%2esecret", "/.hidden/"]) {
    const response = await fetchRaw(site.port, req("GET", path));
    assert.ok(!/SECRET=env|hidden x|sub secret/.test(bin(response.body)), `${path}: ${describe(response)}`);
    assertNotFound(response, path);
  }
});

Deno.test("dotfiles are served with --dotfiles", async () => {
  await using site = await openSite({ files: DOTFILES, args: ["--dotfiles"] });
  assertFile(await fetchRaw(site.port, req("GET", "/.env")), "SECRET=env", "/.env");
  assertFile(await fetchRaw(site.port, req("GET", "/.hidden/x.txt")), "hidden x", "/.hidden/x.txt");
  assertFile(await fetchRaw(site.port, req("GET", "/sub/.secret")), "sub secret", "/sub/.secret");
});

// ---------------------------------------------------------------------------------------------
// Directories

Deno.test("a directory with a trailing slash serves its index.html as text/html", async () => {
  const index = "<!doctype html><title>docs</title>";
  const nested = "<!doctype html><title>nested</title>";
  await using site = await openSite({ files: { "docs/index.html": index, "docs/inner/index.html": nested } });
  for (const [path, body] of [["/docs/", index], ["/docs/?q=1", index], ["/docs/inner/", nested]]) {
    const response = await fetchRaw(site.port, req("GET", path));
    assertFile(response, body, path);
    assert.equal(response.headers.get("content-type"), HTML_TYPE, path);
  }
});

Deno.test("a directory without a trailing slash redirects 301 to the path plus a slash, keeping the query", async () => {
  await using site = await openSite({ files: { "docs/index.html": "index", "docs/inner/index.html": "inner" } });
  const cases = [
    ["/docs", "/docs/"],
    ["/docs?x=1&y=2", "/docs/?x=1&y=2"],
    ["/docs/inner", "/docs/inner/"],
  ];
  for (const [target, location] of cases) {
    const response = await fetchRaw(site.port, req("GET", target));
    assert.equal(response.status, 301, `GET ${target}: ${describe(response)}`);
    assert.equal(response.headers.get("location"), location, `GET ${target}`);
  }
});

Deno.test("a directory redirect never sends the client to another host", async () => {
  await using site = await openSite({ files: { "docs/index.html": "index" } });
  const targets = [
    "//evil.example/../docs",
    "///evil.example/../docs",
    "//evil.example/%2e%2e/docs",
    "http://x//evil.example/../docs",
  ];
  for (const target of targets) {
    const response = await fetchRaw(site.port, req("GET", target));
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400) {
      assert.ok(location, `GET ${target}: a redirect without Location: ${describe(response)}`);
      // Resolved as a browser would: a Location of "//evil.example/..." is another host.
      const host = new URL(location, "http://127.0.0.1/").host;
      assert.equal(host, "127.0.0.1", `GET ${target}: ${describe(response)}`);
    } else {
      // Not a redirect: then a refusal, with no Location to follow.
      assert.ok(response.status === 400 || response.status === 404, `GET ${target}: ${describe(response)}`);
      assert.equal(location, undefined, `GET ${target}: ${describe(response)}`);
    }
  }
});

Deno.test("a directory without index.html answers 404 without --dir-listing", async () => {
  await using site = await openSite({ files: { "plain/file.txt": "f" } });
  const response = await fetchRaw(site.port, req("GET", "/plain/"));
  assertNotFound(response, "/plain/");
  assert.ok(!bin(response.body).includes("file.txt"), describe(response));
});

const LISTED = {
  "files/plain.txt": "p",
  "files/<b>&\"x'.txt": "odd",
  "files/.dotfile": "d",
  "files/nested/y": "y",
  "files/<i>\"d'/z": "z",
};
const RAW_NAME = "<b>&\"x'.txt";
const ODD_DIR = "<i>\"d'";

Deno.test("--dir-listing lists a directory as text/html with HTML-escaped names and no dotfiles", async () => {
  await using site = await openSite({ files: LISTED, args: ["--dir-listing"] });
  const response = await fetchRaw(site.port, req("GET", "/files/"));
  assert.equal(response.status, 200, describe(response));
  assert.equal(response.headers.get("content-type"), HTML_TYPE);
  const html = bin(response.body);
  assert.ok(html.includes("plain.txt"), `plain.txt not listed:\n${html}`);
  assert.ok(html.includes("nested"), `nested/ not listed:\n${html}`);
  assert.ok(!html.includes(RAW_NAME), `raw name appears unescaped:\n${html}`);
  assert.ok(!html.includes("<b>&"), `the file name's <b> appears unescaped:\n${html}`);
  assert.match(html, /&(lt|#60|#x3c);b&(gt|#62|#x3e);&(amp|#38|#x26);/i, "escaped name not listed");
  assert.ok(!html.includes(".dotfile"), `a dotfile is listed:\n${html}`);
  // A folder whose name holds HTML, asked for with those characters raw: its title is escaped too.
  const odd = await fetchRaw(site.port, req("GET", `/files/${ODD_DIR}/`));
  assert.equal(odd.status, 200, describe(odd));
  assert.ok(!bin(odd.body).includes(ODD_DIR), `folder name appears unescaped:\n${bin(odd.body)}`);
  // The listing does not reach other behaviour: files and the index route are unchanged.
  assertFile(await fetchRaw(site.port, req("GET", "/files/plain.txt")), "p", "/files/plain.txt");
  assert.equal((await fetchRaw(site.port, req("GET", "/"))).status, 200);
});

Deno.test("--dir-listing with --dotfiles also lists dotfiles", async () => {
  await using site = await openSite({ files: LISTED, args: ["--dir-listing", "--dotfiles"] });
  const response = await fetchRaw(site.port, req("GET", "/files/"));
  assert.equal(response.status, 200, describe(response));
  const html = bin(response.body);
  assert.ok(html.includes(".dotfile"), `dotfile not listed:\n${html}`);
  assert.ok(!html.includes(RAW_NAME), `raw name appears unescaped:\n${html}`);
});

// ---------------------------------------------------------------------------------------------
// Content-Type

Deno.test("Content-Type follows the extension, and every file response has X-Content-Type-Options: nosniff", async () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);
  await using site = await openSite({
    files: {
      "a.html": "<p>a</p>",
      "a.css": "p{}",
      "a.js": "1;",
      "a.json": "{}",
      "a.png": png,
      "a.unknownext": "??",
      "noext": "none",
    },
  });
  const expected: Array<[string, string[]]> = [
    ["/a.html", [HTML_TYPE]],
    ["/a.css", ["text/css; charset=utf-8"]],
    ["/a.js", ["application/javascript; charset=utf-8", "text/javascript; charset=utf-8"]],
    ["/a.json", ["application/json; charset=utf-8"]],
    ["/a.png", ["image/png"]],
    ["/a.unknownext", ["application/octet-stream"]],
    ["/noext", ["application/octet-stream"]],
  ];
  for (const [path, types] of expected) {
    for (const method of ["GET", "HEAD"]) {
      const response = await fetchRaw(site.port, req(method, path), { head: method === "HEAD" });
      assert.equal(response.status, 200, `${method} ${path}: ${describe(response)}`);
      const type = response.headers.get("content-type") ?? "";
      assert.ok(types.includes(type), `${method} ${path}: Content-Type ${type}, expected one of ${types}`);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff", `${method} ${path}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Caching

Deno.test("a file has ETag and Last-Modified; If-None-Match with that ETag answers 304 without a body", async () => {
  await using site = await openSite({ files: { "a.txt": "cache me" } });
  const first = await fetchRaw(site.port, req("GET", "/a.txt"));
  assert.equal(first.status, 200, describe(first));
  const etag = first.headers.get("etag");
  const lastModified = first.headers.get("last-modified");
  assert.ok(etag && /^(W\/)?"[^"]*"$/.test(etag), `ETag ${etag}`);
  assert.ok(lastModified && !Number.isNaN(Date.parse(lastModified)), `Last-Modified ${lastModified}`);
  assert.match(lastModified, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  // The request after the 304 proves no body bytes followed it.
  const [notModified, next] = await exchange(site.port, [
    req("GET", "/a.txt", `If-None-Match: ${etag}\r\n`),
    req("GET", "/nope"),
  ]);
  assert.equal(notModified.status, 304, describe(notModified));
  assert.equal(notModified.headers.get("etag"), etag);
  const length = notModified.headers.get("content-length");
  assert.ok(length === undefined || length === "0" || length === "8", `304 Content-Length ${length}`);
  assertNotFound(next, "GET /nope after the 304");
  // The same ETag in a list of several still matches.
  const listed = await fetchRaw(site.port, req("GET", "/a.txt", `If-None-Match: "zzz", ${etag}\r\n`));
  assert.equal(listed.status, 304, describe(listed));
  // If-None-Match compares weakly (RFC 9110 section 13.1.2).
  const weak = `W/${etag.replace(/^W\//, "")}`;
  const weakly = await fetchRaw(site.port, req("GET", "/a.txt", `If-None-Match: ${weak}\r\n`));
  assert.equal(weakly.status, 304, `If-None-Match: ${weak}: ${describe(weakly)}`);
});

Deno.test("If-None-Match: * answers 304 and a different ETag answers 200", async () => {
  await using site = await openSite({ files: { "a.txt": "cache me" } });
  const star = await fetchRaw(site.port, req("GET", "/a.txt", "If-None-Match: *\r\n"));
  assert.equal(star.status, 304, describe(star));
  assert.equal(star.body.length, 0);
  const other = await fetchRaw(site.port, req("GET", "/a.txt", 'If-None-Match: "definitely-not-the-etag"\r\n'));
  assertFile(other, "cache me", "a different ETag");
});

Deno.test("If-Modified-Since equal to Last-Modified answers 304 and an older date answers 200", async () => {
  await using site = await openSite({ files: { "a.txt": "dated" } });
  const first = await fetchRaw(site.port, req("GET", "/a.txt"));
  const lastModified = first.headers.get("last-modified") ?? "";
  assert.ok(lastModified, describe(first));
  const same = await fetchRaw(site.port, req("GET", "/a.txt", `If-Modified-Since: ${lastModified}\r\n`));
  assert.equal(same.status, 304, `If-Modified-Since: ${lastModified}: ${describe(same)}`);
  assert.equal(same.body.length, 0);
  const older = new Date(Date.parse(lastModified) - 86_400_000).toUTCString();
  assertFile(await fetchRaw(site.port, req("GET", "/a.txt", `If-Modified-Since: ${older}\r\n`)), "dated", older);
  const garbage = await fetchRaw(site.port, req("GET", "/a.txt", "If-Modified-Since: not a date\r\n"));
  assertFile(garbage, "dated", "If-Modified-Since: not a date");
  // If-None-Match takes precedence: a non-matching ETag wins over a matching date.
  const both = await fetchRaw(
    site.port,
    req("GET", "/a.txt", `If-None-Match: "not-it"\r\nIf-Modified-Since: ${lastModified}\r\n`),
  );
  assertFile(both, "dated", "non-matching If-None-Match with a matching If-Modified-Since");
});

Deno.test("Cache-Control defaults to no-cache on files", async () => {
  await using site = await openSite({ files: { "a.txt": "A", "a.css": "p{}" } });
  for (const path of ["/a.txt", "/a.css"]) {
    const response = await fetchRaw(site.port, req("GET", path));
    assert.equal(response.headers.get("cache-control"), "no-cache", `${path}: ${describe(response)}`);
  }
});

Deno.test("--cache-control sets the Cache-Control of files", async () => {
  await using site = await openSite({ files: { "a.txt": "A" }, args: ["--cache-control", "public, max-age=60"] });
  const response = await fetchRaw(site.port, req("GET", "/a.txt"));
  assert.equal(response.status, 200, describe(response));
  assert.equal(response.headers.get("cache-control"), "public, max-age=60");
});

// ---------------------------------------------------------------------------------------------
// Ranges

const ALPHABET = "abcdefghijklmnopqrstuvwxyz";

Deno.test("Range bytes=0-4 answers 206 with exactly those five bytes", async () => {
  await using site = await openSite({ files: { "abc.txt": ALPHABET } });
  const full = await fetchRaw(site.port, req("GET", "/abc.txt"));
  assert.equal(full.headers.get("accept-ranges"), "bytes", describe(full));
  const response = await fetchRaw(site.port, req("GET", "/abc.txt", "Range: bytes=0-4\r\n"));
  assert.equal(response.status, 206, describe(response));
  assert.equal(response.headers.get("content-range"), "bytes 0-4/26");
  assert.equal(response.headers.get("content-length"), "5");
  assert.equal(bin(response.body), "abcde");
  assert.equal(response.headers.get("accept-ranges"), "bytes");
});

Deno.test("a suffix range returns the last bytes and an open range runs to the end", async () => {
  await using site = await openSite({ files: { "abc.txt": ALPHABET } });
  const cases: Array<[string, string, string]> = [
    ["bytes=-3", "bytes 23-25/26", "xyz"],
    ["bytes=5-", "bytes 5-25/26", ALPHABET.slice(5)],
    ["bytes=25-25", "bytes 25-25/26", "z"],
    ["bytes=20-1000", "bytes 20-25/26", ALPHABET.slice(20)],
  ];
  for (const [range, contentRange, body] of cases) {
    const response = await fetchRaw(site.port, req("GET", "/abc.txt", `Range: ${range}\r\n`));
    assert.equal(response.status, 206, `${range}: ${describe(response)}`);
    assert.equal(response.headers.get("content-range"), contentRange, range);
    assert.equal(response.headers.get("content-length"), String(body.length), range);
    assert.equal(bin(response.body), body, range);
  }
});

Deno.test("an unsatisfiable range answers 416 with Content-Range: bytes */size", async () => {
  await using site = await openSite({ files: { "abc.txt": ALPHABET } });
  for (const range of ["bytes=26-", "bytes=100-200"]) {
    const response = await fetchRaw(site.port, req("GET", "/abc.txt", `Range: ${range}\r\n`));
    assert.equal(response.status, 416, `${range}: ${describe(response)}`);
    assert.equal(response.headers.get("content-range"), "bytes */26", range);
    assert.ok(!bin(response.body).includes(ALPHABET), `${range}: the file was sent`);
  }
});

Deno.test("If-Range with the current ETag honours the range; with another ETag the whole file is sent", async () => {
  await using site = await openSite({ files: { "abc.txt": ALPHABET } });
  const etag = (await fetchRaw(site.port, req("GET", "/abc.txt"))).headers.get("etag");
  assert.ok(etag);
  const current = await fetchRaw(site.port, req("GET", "/abc.txt", `Range: bytes=0-4\r\nIf-Range: ${etag}\r\n`));
  assert.equal(current.status, 206, `If-Range: ${etag}: ${describe(current)}`);
  assert.equal(bin(current.body), "abcde");
  const stale = await fetchRaw(site.port, req("GET", "/abc.txt", 'Range: bytes=0-4\r\nIf-Range: "stale"\r\n'));
  assertFile(stale, ALPHABET, 'If-Range: "stale"');
  // If-Range needs a strong match (RFC 9110 section 13.1.5): the same tag marked weak is not one.
  const weak = await fetchRaw(site.port, req("GET", "/abc.txt", `Range: bytes=0-4\r\nIf-Range: W/${etag}\r\n`));
  assertFile(weak, ALPHABET, `If-Range: W/${etag}`);
});

Deno.test("several ranges answer the whole file or multipart/byteranges, with the right bytes either way", async () => {
  await using site = await openSite({ files: { "abc.txt": ALPHABET } });
  const response = await fetchRaw(site.port, req("GET", "/abc.txt", "Range: bytes=0-1,3-4\r\n"));
  if (response.status === 200) {
    assertFile(response, ALPHABET, "bytes=0-1,3-4 as the whole file");
    return;
  }
  assert.equal(response.status, 206, describe(response));
  const type = response.headers.get("content-type") ?? "";
  assert.equal(response.headers.get("content-length"), String(response.body.length));
  if (type.toLowerCase().startsWith("multipart/byteranges")) {
    const parts = parseByteRanges(type, response.body);
    assert.deepEqual(parts.map((p) => [p.contentRange, p.data]), [["bytes 0-1/26", "ab"], ["bytes 3-4/26", "de"]]);
  } else {
    // A server may coalesce nearby ranges into one (RFC 9110 section 14.2); then it must cover both.
    const match = (response.headers.get("content-range") ?? "").match(/^bytes (\d+)-(\d+)\/26$/);
    assert.ok(match, describe(response));
    const [first, last] = [Number(match[1]), Number(match[2])];
    assert.ok(first <= 0 && last >= 4, describe(response));
    assert.equal(bin(response.body), ALPHABET.slice(first, last + 1));
  }
});

Deno.test("HEAD with Range answers the 206 headers without a body", async () => {
  await using site = await openSite({ files: { "abc.txt": ALPHABET } });
  const [head, next] = await exchange(site.port, [
    req("HEAD", "/abc.txt", "Range: bytes=0-4\r\n"),
    req("GET", "/nope"),
  ], [true, false]);
  assert.equal(head.status, 206, describe(head));
  assert.equal(head.headers.get("content-range"), "bytes 0-4/26");
  assert.equal(head.headers.get("content-length"), "5");
  assert.equal(head.headers.get("accept-ranges"), "bytes");
  assertNotFound(next, "GET /nope after HEAD with Range");
});

// ---------------------------------------------------------------------------------------------
// Precompressed files

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const PLAIN_JS = "console.log('the plain file');\n";
// The server sends the .br file as it is; distinct bytes are enough to tell it apart.
const BROTLI_JS = new Uint8Array([0x8b, 0x0f, 0x80, ...encoder.encode("brotli-bytes"), 0x03, 0xff, 0x00]);
const GZIP_JS = await gzip(PLAIN_JS);
const JS_TYPES = ["application/javascript; charset=utf-8", "text/javascript; charset=utf-8"];

function assertVaries(response: Response1, what: string): void {
  const vary = response.headers.get("vary") ?? "";
  assert.ok(/(^|,)\s*accept-encoding\s*(,|$)/i.test(vary), `${what}: Vary is ${JSON.stringify(vary)}`);
  const type = response.headers.get("content-type") ?? "";
  assert.ok(JS_TYPES.includes(type), `${what}: Content-Type ${type}`);
}

async function openPrecompressed() {
  return await openSite({ files: { "app.js": PLAIN_JS, "app.js.br": BROTLI_JS, "app.js.gz": GZIP_JS } });
}

Deno.test("Accept-Encoding: br answers the .br file with Content-Encoding: br", async () => {
  await using site = await openPrecompressed();
  const response = await fetchRaw(site.port, req("GET", "/app.js", "Accept-Encoding: br\r\n"));
  assert.equal(response.status, 200, describe(response));
  assert.equal(response.headers.get("content-encoding"), "br");
  assert.equal(bin(response.body), bin(BROTLI_JS));
  assert.equal(response.headers.get("content-length"), String(BROTLI_JS.length));
  assertVaries(response, "br");
});

Deno.test("Accept-Encoding: gzip answers the .gz file with Content-Encoding: gzip", async () => {
  await using site = await openPrecompressed();
  const response = await fetchRaw(site.port, req("GET", "/app.js", "Accept-Encoding: gzip\r\n"));
  assert.equal(response.status, 200, describe(response));
  assert.equal(response.headers.get("content-encoding"), "gzip");
  assert.equal(bin(response.body), bin(GZIP_JS));
  assert.equal(response.headers.get("content-length"), String(GZIP_JS.length));
  assertVaries(response, "gzip");
});

Deno.test("gzip;q=0 or no Accept-Encoding answers the plain file, still with Vary: Accept-Encoding", async () => {
  await using site = await openPrecompressed();
  for (const extra of ["Accept-Encoding: gzip;q=0, identity\r\n", ""]) {
    const response = await fetchRaw(site.port, req("GET", "/app.js", extra));
    const what = extra ? extra.trim() : "no Accept-Encoding";
    assertFile(response, PLAIN_JS, what);
    const encoding = response.headers.get("content-encoding");
    assert.ok(encoding === undefined || encoding === "identity", `${what}: Content-Encoding ${encoding}`);
    assertVaries(response, what);
  }
});

Deno.test("a client accepting both br and gzip gets one of them, with matching bytes", async () => {
  await using site = await openPrecompressed();
  const response = await fetchRaw(site.port, req("GET", "/app.js", "Accept-Encoding: gzip, deflate, br\r\n"));
  assert.equal(response.status, 200, describe(response));
  const encoding = response.headers.get("content-encoding");
  const expected = encoding === "br" ? BROTLI_JS : encoding === "gzip" ? GZIP_JS : undefined;
  assert.ok(expected, `Content-Encoding ${encoding}`);
  assert.equal(bin(response.body), bin(expected));
  assertVaries(response, "gzip, deflate, br");
});

// ---------------------------------------------------------------------------------------------
// Methods

Deno.test("POST, PUT and DELETE on a static file answer 405 with Allow: GET, HEAD", async () => {
  await using site = await openSite({ files: { "a.txt": "A", "docs/index.html": "i" } });
  const requests = [
    "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    "PUT /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew",
    "DELETE /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /docs/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
  ];
  for (const raw of requests) {
    const response = await fetchRaw(site.port, raw);
    assert.equal(response.status, 405, `${raw.split("\r\n")[0]}: ${describe(response)}`);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
  }
  // Nothing was changed or removed.
  assert.equal(await Deno.readTextFile(`${site.root}/a.txt`), "A");
  assertFile(await fetchRaw(site.port, req("GET", "/a.txt")), "A", "/a.txt after the 405s");
});

Deno.test("the client's q-values choose between precompressed br and gzip", async () => {
  await using site = await openSite({ files: { "app.js": "plain", "app.js.br": "brotli", "app.js.gz": "gzipped" } });
  const cases: Array<[string, string | undefined, string]> = [
    ["gzip;q=1, br;q=0.1", "gzip", "gzipped"],
    ["br, gzip", "br", "brotli"],
    ["gzip, br", "br", "brotli"],
    ["*;q=0.5, gzip;q=0.8", "gzip", "gzipped"],
    ["*", "br", "brotli"],
    ["br;q=0, gzip;q=0", undefined, "plain"],
  ];
  for (const [accept, coding, body] of cases) {
    const [response] = await exchange(site.port, [
      `GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: ${accept}\r\n\r\n`,
    ]);
    assert.equal(response.headers.get("content-encoding"), coding, accept);
    assert.equal(response.text, body, accept);
  }
});

Deno.test("a suffix range longer than the file gives the whole file as 206, and q=0 refuses a coding despite *", async () => {
  await using site = await openSite({ files: { "small.txt": "0123456789", "app.js": "plain", "app.js.br": "brotli" } });
  const [ranged, refused] = await exchange(site.port, [
    "GET /small.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=-100\r\n\r\n",
    "GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br;q=0, *\r\n\r\n",
  ]);
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get("content-range"), "bytes 0-9/10");
  assert.equal(ranged.text, "0123456789");
  assert.equal(refused.headers.get("content-encoding"), undefined);
  assert.equal(refused.text, "plain");
});
