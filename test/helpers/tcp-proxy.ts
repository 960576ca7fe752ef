/**
 * A TCP proxy on loopback (node:net) in front of PostgreSQL that can go silent: `stall()` stops
 * forwarding on the connections open now without closing them, so their peers see a half-open
 * connection (as when a NAT, a load balancer or a Cloud SQL proxy drops state). Both ends keep
 * acknowledging TCP, so keepalive probes do not notice either: only an application timeout can.
 * Connections opened after the stall are forwarded normally, unless `stallNew` is set.
 */
import net from "node:net";

export interface TcpProxy {
  /** A PostgreSQL URL like `target` but through the proxy. */
  url: string;
  /** Connections accepted so far. */
  accepted(): number;
  /** Stops forwarding on every connection open now (and on new ones too with `stallNew`), keeping them open. */
  stall(options?: { stallNew?: boolean }): void;
  /** Forwards again on new connections (stalled ones stay stalled: their state is lost). */
  resume(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const stalled = new WeakSet<net.Socket>();
  let stallNew = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on("data", (chunk) => {
        if (!stalled.has(from)) to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    if (stallNew) stalled.add(client).add(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(targetUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    accepted: () => accepted,
    stall(options = {}) {
      for (const socket of sockets) stalled.add(socket);
      stallNew = options.stallNew ?? false;
    },
    resume() {
      stallNew = false;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
