import assert from "node:assert/strict";
import { NOT_FOUND, ROOT_INDEX, route, type RouteResponse, ROUTES, SLEEP_MS } from "../handlers/mod.ts";
import { targetPath } from "../http/mod.ts";
import { parseRequest } from "../http/mod.ts";

const pages = { hello: new TextEncoder().encode("hello"), notFound: new TextEncoder().encode("missing") };

function req(method: string, target: string) {
  return parseRequest(new TextEncoder().encode(`${method} ${target} HTTP/1.1\r\nHost: a\r\n\r\n`));
}

Deno.test("route() answers GET / with hello.html", () => {
  const response = route(req("GET", "/"), pages) as RouteResponse;
  assert.equal(response.status, 200);
  assert.equal(response.body, pages.hello);
  assert.deepEqual(response.headers, [["Content-Type", "text/html; charset=utf-8"]]);
});

Deno.test("route() answers HEAD like GET (the serializer drops the body)", () => {
  assert.equal((route(req("HEAD", "/"), pages) as RouteResponse).status, 200);
});

Deno.test("route() leaves any other path to the static root and then NOT_FOUND", () => {
  for (const target of ["/index.html", "/sleep/", "/SLEEP", "//", "/%2F"]) {
    assert.equal(route(req("GET", target), pages), undefined, target);
  }
  assert.equal(route(req("DELETE", "/nothing"), pages), undefined);
  const response = NOT_FOUND(req("GET", "/x"), pages);
  assert.equal(response.status, 404);
  assert.equal(response.body, pages.notFound);
});

Deno.test("route() answers another method on a known path with 405 and Allow", () => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "BREW"]) {
    const response = route(req(method, "/"), pages) as RouteResponse;
    assert.equal(response?.status, 405, method);
    assert.deepEqual(response?.headers.find(([name]) => name === "Allow"), ["Allow", "GET, HEAD"]);
    assert.equal(new TextDecoder().decode(response?.body), "405 Method Not Allowed\n");
  }
});

Deno.test("without hello.html, / is left to the root's index, and so is /sleep once it has slept", () => {
  const bare = { hello: undefined, notFound: pages.notFound };
  assert.equal(route(req("GET", "/"), bare), ROOT_INDEX);
  assert.equal((route(req("POST", "/"), bare) as RouteResponse).status, 405);
});

Deno.test("the route table holds / and /sleep, and /sleep blocks for five seconds", () => {
  assert.deepEqual([...ROUTES.keys()], ["/", "/sleep"]);
  assert.equal(SLEEP_MS, 5000);
  assert.equal(NOT_FOUND(req("GET", "/x"), pages).status, 404);
});

Deno.test("targetPath() takes the path from origin-form and absolute-form targets", () => {
  assert.equal(targetPath("/"), "/");
  assert.equal(targetPath("/sleep?ms=1"), "/sleep");
  assert.equal(targetPath("/a#frag"), "/a");
  assert.equal(targetPath("http://example.com/sleep?x"), "/sleep");
  assert.equal(targetPath("http://example.com"), "/");
  assert.equal(targetPath("http://example.com?x"), "/");
});
