/**
 * HTTPS: the listener accepts plain TCP and runs TLS (`node:tls`, ALPN `http/1.1`) over each
 * connection, so the server holds the socket itself from its first byte. A client that never
 * finishes (or never starts) its handshake is closed by the header timeout like any other: the
 * connection's first deadline runs from the accept. (`Deno.listenTls` hands over connections that
 * cannot be closed before their handshake has completed: measured in Deno 2.9.)
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";

/**
 * What a connection needs of its socket: a `Deno.Conn`, or the TLS stream over one. Reads and
 * writes reject once it is closed, as a `Deno.Conn`'s do.
 */
export interface ByteStream {
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
  /** Reads into `p`: the count of bytes read, or `null` at the peer's end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`: the count of bytes written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the stream; reads and writes in progress reject. */
  close(): void;
  /** Turns Nagle's algorithm off (or on), where the socket has it. */
  setNoDelay?(noDelay?: boolean): void;
}

/** What the accept loop needs of a listener. */
export interface Acceptor {
  /** The address bound. */
  readonly addr: Deno.NetAddr;
  /** The next connection. */
  accept(): Promise<ByteStream>;
  /** Stops listening. */
  close(): void;
}

/** A certificate chain and its private key, in PEM. */
export interface KeyPair {
  /** The certificate chain, leaf first. */
  cert: string;
  /** The leaf's private key. */
  key: string;
}

/** Why a certificate and key cannot serve TLS together; the message says which and why. */
export class KeyPairError extends Error {
  /**
   * A certificate and key that do not make a TLS configuration.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { KeyPairError } from "./tls.ts";
   * assert.equal(new KeyPairError("the key is not the certificate's").name, "KeyPairError");
   * ```
   */
  constructor(message: string) {
    super(message);
    this.name = "KeyPairError";
  }
}

// The protocol offered in ALPN: a client that would prefer HTTP/2 knows what it gets.
const ALPN = ["http/1.1"];
// After a close, how long the TLS close_notify and the last bytes may take before the socket is
// dropped anyway (a peer that reads nothing must not hold it).
const CLOSE_GRACE_MS = 1000;
// The most read from the TCP socket at once: one TLS record and its overhead.
const TCP_READ_SIZE = 17 * 1024;

/**
 * The TLS configuration of a certificate chain and key, checked now so that a bad pair stops
 * start-up instead of failing every handshake.
 *
 * @throws {KeyPairError} When either does not parse or the key is not the certificate's.
 *
 * @example
 * ```ts ignore
 * const context = tlsContext({ cert: await Deno.readTextFile("cert.pem"), key: await Deno.readTextFile("key.pem") });
 * ```
 */
export function tlsContext(pair: KeyPair): SecureContext {
  let matches: boolean;
  try {
    matches = new X509Certificate(pair.cert).checkPrivateKey(createPrivateKey(pair.key));
  } catch (error) {
    throw new KeyPairError(`cannot read them (${(error as Error).message})`);
  }
  if (!matches) throw new KeyPairError("the key is not the certificate's private key");
  return createSecureContext(pair);
}

/**
 * Accepts TCP connections from `listener` and speaks TLS over each.
 *
 * @example
 * ```ts ignore
 * const acceptor = new TlsAcceptor(Deno.listen({ port: 8443 }), tlsContext(pair));
 * const stream = await acceptor.accept();
 * ```
 */
export class TlsAcceptor implements Acceptor {
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #context: SecureContext;

  /** TLS with `context` over the connections `listener` accepts. */
  constructor(listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>, context: SecureContext) {
    this.#listener = listener;
    this.#context = context;
  }

  /** The address bound. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** The next connection, its handshake still to come (it runs as the first read waits). */
  async accept(): Promise<ByteStream> {
    return new TlsStream(await this.#listener.accept(), this.#context);
  }

  /** Stops listening. */
  close(): void {
    this.#listener.close();
  }
}

// The TCP connection as the stream node:tls reads ciphertext from and writes it to. node:tls asks
// for more ciphertext however much plaintext is already waiting to be read, so reading from TCP is
// parked while `full()` says so, and `resume()` goes on once the reader has taken some: the client
// is held off by TCP's own flow control, as over plain TCP, instead of filling memory.
function ciphertext(tcp: Deno.TcpConn, full: () => boolean): { stream: Duplex; resume(): void } {
  // One buffer for every read; what was read is copied out, as node:tls may keep it.
  const buffer = new Uint8Array(TCP_READ_SIZE);
  let parked = false;
  const pull = () => {
    if (full()) {
      parked = true;
      return;
    }
    parked = false;
    tcp.read(buffer).then(
      (n) => stream.push(n === null ? null : buffer.slice(0, n)),
      (error) => stream.destroy(error),
    );
  };
  const stream = new Duplex({
    read: pull,
    write(chunk: Uint8Array, _encoding, done) {
      (async () => {
        for (let offset = 0; offset < chunk.length;) offset += await tcp.write(chunk.subarray(offset));
      })().then(() => done(), done);
    },
    final(done) {
      // Rejects (never throws) once the socket is closed.
      tcp.closeWrite().then(() => done(), () => done());
    },
    destroy(error, done) {
      try {
        tcp.close();
      } catch {
        // already closed
      }
      done(error);
    },
  });
  return { stream, resume: () => parked && pull() };
}

// One TLS connection, read and written as a ByteStream.
class TlsStream implements ByteStream {
  readonly remoteAddr: Deno.Addr;
  readonly #tcp: Deno.TcpConn;
  readonly #socket: TLSSocket;
  #pending: Uint8Array | undefined;
  #ended = false;
  #secure = false;
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #writes = new Set<(error: Error) => void>();
  readonly #resume: () => void;

  constructor(tcp: Deno.TcpConn, context: SecureContext) {
    this.remoteAddr = tcp.remoteAddr;
    this.#tcp = tcp;
    // Full once node:tls holds as much plaintext as its stream wants (none before it exists).
    const full = () => {
      const socket = this.#socket as TLSSocket | undefined;
      return socket !== undefined && socket.readableLength >= socket.readableHighWaterMark;
    };
    const { stream, resume } = ciphertext(tcp, full);
    this.#resume = resume;
    const socket = this.#socket = new TLSSocket(stream, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ALPN,
    });
    const wake = () => {
      const resolve = this.#wake;
      this.#wake = undefined;
      resolve?.();
    };
    socket.on("secure", () => this.#secure = true);
    socket.on("readable", wake);
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    // Always listened for: an unheard "error" would end the process. A failed handshake (plain
    // HTTP, a client that distrusts the certificate) ends up here, and the read reports it.
    socket.on("error", (error: Error) => {
      this.#error ??= error;
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
  }

  async read(p: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) throw new Deno.errors.Interrupted("the connection was closed");
      if (this.#pending !== undefined) {
        const n = Math.min(p.length, this.#pending.length);
        p.set(this.#pending.subarray(0, n));
        this.#pending = n === this.#pending.length ? undefined : this.#pending.subarray(n);
        return n;
      }
      if (this.#error !== undefined) throw this.#error;
      const chunk = this.#socket.read() as Uint8Array | null;
      if (chunk !== null) {
        this.#pending = chunk;
        // Taken: room for more ciphertext.
        this.#resume();
        continue;
      }
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("the connection was closed"));
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return new Promise<number>((resolve, reject) => {
      this.#writes.add(reject);
      // Done once the ciphertext is written to the socket, so the caller may reuse `p`.
      this.#socket.write(p, (error?: Error | null) => {
        this.#writes.delete(reject);
        if (error) reject(error);
        else resolve(p.length);
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new Deno.errors.BadResource("the connection was closed");
    for (const reject of this.#writes) reject(closed);
    this.#writes.clear();
    this.#wake?.();
    if (!this.#secure || this.#error !== undefined) {
      // No handshake (yet): nothing to say in TLS, and the peer may never say anything.
      this.#socket.destroy();
      return;
    }
    // close_notify, then the socket; at once if the peer will not take it.
    const timer = setTimeout(() => this.#socket.destroy(), CLOSE_GRACE_MS);
    this.#socket.end(() => {
      clearTimeout(timer);
      this.#socket.destroy();
    });
  }

  setNoDelay(noDelay = true): void {
    this.#tcp.setNoDelay(noDelay);
  }
}
