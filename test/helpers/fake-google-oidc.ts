/**
 * Google's side of OIDC, for tests: a real HTTP server publishing a JWKS (as
 * https://www.googleapis.com/oauth2/v3/certs does) and real RS256 ID tokens signed with its key.
 */
import http from "node:http";
import { closeServer, listenOnLoopback } from "../../src/demo/loopback.ts";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";

export const GOOGLE_ISSUER = "https://accounts.google.com";

export interface IdTokenClaims {
  email?: string;
  email_verified?: boolean;
  aud?: string;
  iss?: string;
  /** Seconds from now; negative for an expired token; null for a token without `exp`. */
  expiresIn?: number | null;
  /** `iat` in seconds from now (default -10); positive for a token issued in the future; null for none. */
  issuedIn?: number | null;
}

export class FakeGoogleOidc {
  jwksUrl = "";
  #server = http.createServer((_request, response) => {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ keys: [this.#publicJwk] }));
  });
  #privateKey!: CryptoKey;
  #publicJwk!: Record<string, unknown>;

  async start(): Promise<this> {
    const { publicKey, privateKey } = await generateKeyPair("RS256");
    this.#privateKey = privateKey;
    this.#publicJwk = { ...(await exportJWK(publicKey)), kid: "test-key-1", alg: "RS256", use: "sig" };
    this.jwksUrl = `${await listenOnLoopback(this.#server)}/oauth2/v3/certs`;
    return this;
  }

  async stop(): Promise<void> {
    await closeServer(this.#server);
  }

  /** An ID token as Google signs it for a service account calling a Cloud Run service. */
  async idToken(audience: string, claims: IdTokenClaims = {}, key: CryptoKey = this.#privateKey): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ email: claims.email ?? "scheduler@observing-prod.iam.gserviceaccount.com", email_verified: claims.email_verified ?? true })
      .setProtectedHeader({ alg: "RS256", kid: "test-key-1", typ: "JWT" })
      .setIssuer(claims.iss ?? GOOGLE_ISSUER)
      .setAudience(claims.aud ?? audience)
      .setSubject("113456789012345678901");
    if (claims.issuedIn !== null) jwt.setIssuedAt(now + (claims.issuedIn ?? -10));
    if (claims.expiresIn !== null) jwt.setExpirationTime(now + (claims.expiresIn ?? 300));
    return jwt.sign(key);
  }

  /** A token signed by a key the JWKS does not publish. */
  async forgedIdToken(audience: string): Promise<string> {
    const { privateKey } = await generateKeyPair("RS256");
    return this.idToken(audience, {}, privateKey);
  }
}
