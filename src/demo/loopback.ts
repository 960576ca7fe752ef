/** Starting and stopping the fakes' real HTTP servers, on 127.0.0.1 and a free port. */
import type http from "node:http";
import type { AddressInfo } from "node:net";

/** Listens on a free loopback port; returns the server's base URL. */
export async function listenOnLoopback(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes the server, cutting keep-alive connections instead of waiting for them. */
export async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
