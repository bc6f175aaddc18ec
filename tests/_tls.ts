// Test helper: key pairs for the TLS tests, made with Debian's openssl.
import assert from "node:assert/strict";
import { join } from "node:path";

async function openssl(...args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" }).output();
  assert.ok(success, `openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
}

/**
 * A certificate for `names` (subjectAltName entries) signed by a throwaway CA, and its key, as PEM
 * files in `dir`, valid for `days` (negative: expired already); `pem` is the CA's certificate,
 * which a client trusts.
 */
export async function keyPair(
  dir: string,
  name: string,
  names: string,
  days = "2",
): Promise<{ cert: string; key: string; pem: string }> {
  const file = (what: string) => join(dir, `${name}.${what}.pem`);
  await openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    file("ca-key"),
    "-out",
    file("ca"),
    "-days",
    "2",
    "-subj",
    `/CN=webserver test CA ${name}`,
  );
  await openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    file("key"),
    "-out",
    file("csr"),
    "-subj",
    "/CN=webserver test",
  );
  await Deno.writeTextFile(file("ext"), `subjectAltName=${names}\nbasicConstraints=CA:FALSE\n`);
  await openssl(
    "x509",
    "-req",
    "-in",
    file("csr"),
    "-CA",
    file("ca"),
    "-CAkey",
    file("ca-key"),
    "-CAcreateserial",
    "-out",
    file("cert"),
    "-days",
    days,
    "-extfile",
    file("ext"),
  );
  return { cert: file("cert"), key: file("key"), pem: await Deno.readTextFile(file("ca")) };
}
