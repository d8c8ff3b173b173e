/**
 * A real TCP proxy in front of a test peer (MinIO) whose behaviour a test switches at runtime:
 *
 * - `forward`: bytes flow both ways, untouched;
 * - `refuse`: nothing listens on the port any more, so a connect fails with a true ECONNREFUSED, and
 *   connections already open are reset (the peer's host went away). Switching back listens again on the
 *   same port;
 * - `hang`: connections are accepted, read and discarded, never answered; connections already open stall
 *   the same way (nothing more reaches the peer or comes back from it). Switching back to `forward`
 *   destroys the stalled sockets, as a peer that recovers does with connections it lost.
 *
 * The counters say what the proxy saw, so a test can prove its fault was actually exercised.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export type FaultMode = 'forward' | 'refuse' | 'hang';

export interface FaultProxyStats {
  /** Connections forwarded to the peer. */
  forwarded: number;
  /** Open connections reset when `refuse` began. */
  reset: number;
  /** Connections that stalled in `hang`: accepted while hanging, or open when it began. */
  stalled: number;
  /** Connections accepted while hanging (a subset of `stalled`). */
  acceptedWhileHanging: number;
  /** Bytes clients sent that were read and thrown away while hanging. */
  discardedBytes: number;
  /** Connect attempts `probeRefused()` saw fail with ECONNREFUSED. */
  refusedProbes: number;
}

interface Pair {
  client: Socket;
  upstream: Socket | null;
  stall(): void;
}

export class FaultProxy {
  readonly stats: FaultProxyStats = { forwarded: 0, reset: 0, stalled: 0, acceptedWhileHanging: 0, discardedBytes: 0, refusedProbes: 0 };
  #mode: FaultMode = 'forward';
  #server: Server | null = null;
  readonly #pairs = new Set<Pair>();
  readonly #stalled = new Set<Socket>();
  readonly #target: { host: string; port: number };
  #port = 0;
  #closed = false;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  /** Listens on 127.0.0.1, port 0, forwarding to `target` (an http://host:port URL). */
  static async start(target: string): Promise<FaultProxy> {
    const url = new URL(target);
    const proxy = new FaultProxy({ host: url.hostname, port: Number(url.port) });
    await proxy.#listen(0);
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get mode(): FaultMode {
    return this.#mode;
  }

  /** Switches behaviour; resolves once the new mode is in force (e.g. the port listens again). */
  async setMode(mode: FaultMode): Promise<void> {
    if (this.#closed) throw new Error('fault proxy is closed');
    if (mode === this.#mode) return;
    const previous = this.#mode;
    this.#mode = mode;
    if (previous === 'hang') this.#destroyStalled();
    if (mode === 'refuse') {
      this.#stopListening();
      for (const pair of this.#pairs) {
        this.stats.reset++;
        pair.client.resetAndDestroy();
        pair.upstream?.destroy();
      }
      this.#pairs.clear();
    } else if (mode === 'hang') {
      for (const pair of [...this.#pairs]) pair.stall();
    }
    if (previous === 'refuse') await this.#listen(this.#port);
  }

  /**
   * Connects to the proxy's port once, as a client would: true when the connect failed with ECONNREFUSED
   * (counted in `refusedProbes`). Proves that `refuse` really refuses, at the TCP level.
   */
  probeRefused(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = connect(this.#port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        const refused = err.code === 'ECONNREFUSED';
        if (refused) this.stats.refusedProbes++;
        resolve(refused);
      });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#destroyStalled();
    for (const pair of this.#pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    this.#pairs.clear();
    this.#stopListening();
  }

  #listen(port: number): Promise<void> {
    const server = createServer((client) => this.#accept(client));
    return new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`fault proxy cannot listen on 127.0.0.1:${port} (${err.code ?? err.message})`, { cause: err })),
      );
      server.listen(port, '127.0.0.1', () => {
        this.#server = server;
        this.#port = (server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  /** Closes the listening socket at once; connections already accepted are handled by the caller. */
  #stopListening(): void {
    // close() stops listening at once (the kernel refuses new connects from here); its callback would wait
    // for the connections already accepted, which the caller resets or stalls itself.
    this.#server?.close();
    this.#server = null;
  }

  #accept(client: Socket): void {
    if (this.#mode === 'hang') {
      this.stats.acceptedWhileHanging++;
      this.#stall(client);
      return;
    }
    if (this.#mode === 'refuse') {
      // Accepted in the instant before the listener closed.
      this.stats.reset++;
      client.resetAndDestroy();
      return;
    }
    this.stats.forwarded++;
    const upstream = connect(this.#target.port, this.#target.host);
    const pair: Pair = {
      client,
      upstream,
      stall: () => {
        this.#pairs.delete(pair);
        client.unpipe(upstream);
        upstream.unpipe(client);
        upstream.removeListener('close', close);
        upstream.removeListener('error', close);
        client.removeListener('close', close);
        client.removeListener('error', close);
        upstream.destroy();
        pair.upstream = null;
        this.#stall(client);
      },
    };
    const close = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    this.#pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  }

  /** Reads and discards whatever the client sends; never answers. */
  #stall(client: Socket): void {
    this.stats.stalled++;
    this.#stalled.add(client);
    client.on('data', (chunk: Buffer) => {
      this.stats.discardedBytes += chunk.length;
    });
    client.on('error', () => this.#stalled.delete(client));
    client.on('close', () => this.#stalled.delete(client));
    client.resume();
  }

  #destroyStalled(): void {
    for (const socket of this.#stalled) socket.resetAndDestroy();
    this.#stalled.clear();
  }
}
