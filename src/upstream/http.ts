/**
 * JSON over HTTP for the upstream clients (GBIF, Wikidata, IUCN): a User-Agent on every call,
 * a time limit, the caller's abort signal, and errors that say whether a retry can help.
 */

/**
 * An upstream call that failed. `transient` failures (5xx, 429, timeouts, network) are worth
 * retrying; `retryAfterMs` says when the upstream wants the next call (the job is deferred until
 * then); a failure that is not transient cannot succeed on a retry (the job fails permanently).
 */
export class UpstreamError extends Error {
  override name = "UpstreamError";
  readonly upstream: string;
  readonly transient: boolean;
  readonly status: number | undefined;
  /** From a Retry-After header, when the upstream sent one. */
  readonly retryAfterMs: number | undefined;
  constructor(upstream: string, message: string, transient: boolean, status?: number, retryAfterMs?: number) {
    super(`${upstream}: ${message}`);
    this.upstream = upstream;
    this.transient = transient;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

export interface JsonResponse {
  status: number;
  body: unknown;
  headers: Headers;
}

export interface FetchJsonOptions {
  upstream: string;
  userAgent: string;
  timeoutMs: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Statuses the caller interprets itself instead of getting an UpstreamError (e.g. 404 as "no data"). */
  acceptStatuses?: readonly number[];
}

export async function fetchJson(url: URL, options: FetchJsonOptions): Promise<JsonResponse> {
  const { upstream, timeoutMs } = options;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { accept: "application/json", "user-agent": options.userAgent, ...options.headers },
      signal,
    });
  } catch (error) {
    // The job's own abort (shutdown, job timeout) is not the upstream's fault: pass it on as it is.
    if (options.signal?.aborted) throw options.signal.reason;
    if (timeout.aborted) throw new UpstreamError(upstream, `no answer within ${timeoutMs} ms (${url.pathname})`, true);
    const cause = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
    throw new UpstreamError(upstream, `request failed: ${cause}`, true);
  }

  const text = await readBody(response, options, timeout, url);
  const { status } = response;
  if (status === 429 || status >= 500) {
    // Retry-After means "back off until then" on 429 and 503 (RFC 9110); elsewhere it is ignored.
    const backoff = status === 429 || status === 503 ? retryAfterMs(response.headers) : undefined;
    throw new UpstreamError(upstream, `HTTP ${status} from ${url.pathname}${backoff !== undefined ? ` (Retry-After ${Math.round(backoff / 1000)} s)` : ""}`, true, status, backoff);
  }
  const accepted = status < 300 || options.acceptStatuses?.includes(status);
  let body: unknown;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    // A non-JSON page (a proxy error, a "restricted" redirect target) is a passing upstream fault.
    throw new UpstreamError(upstream, `HTTP ${status} from ${url.pathname} with a body that is not JSON`, Boolean(accepted), status);
  }
  if (!accepted) {
    throw new UpstreamError(upstream, `HTTP ${status} from ${url.pathname}: ${summarise(body)}`, false, status);
  }
  return { status, body, headers: response.headers };
}

async function readBody(response: Response, options: FetchJsonOptions, timeout: AbortSignal, url: URL): Promise<string> {
  try {
    return await response.text();
  } catch {
    if (options.signal?.aborted) throw options.signal.reason;
    const why = timeout.aborted ? `no complete answer within ${options.timeoutMs} ms` : "connection lost while reading";
    throw new UpstreamError(options.upstream, `${why} (${url.pathname})`, true, response.status);
  }
}

/** Retry-After as milliseconds: either delay-seconds or an HTTP date. */
export function retryAfterMs(headers: Headers): number | undefined {
  const value = headers.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function summarise(body: unknown): string {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
