// The HTTP client: openapi-fetch bound to the `paths` type generated from openapi.json,
// so every path, parameter, body and response (problem+json errors included) is typed.
import createFetchClient, { type Client, type ClientOptions, type Middleware } from "openapi-fetch";

import type { paths } from "./generated/api.js";

/** A bearer token, or a function that returns the current one (called per request). */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

export interface CoopClientOptions extends Omit<ClientOptions, "baseUrl"> {
  /** The api's origin, e.g. `https://api.coopride.example` (no trailing `/v1`). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`; omit for unauthenticated calls. */
  token?: TokenSource;
}

export type CoopClient = Client<paths>;

export async function resolveToken(token: TokenSource | undefined): Promise<string | undefined> {
  return typeof token === "function" ? await token() : token;
}

/**
 * The typed HTTP client.
 *
 * ```ts
 * const api = createClient({ baseUrl: "https://api.coopride.example", token });
 * const { data, error } = await api.POST("/v1/quotes", { body: { pickup, dropoff } });
 * ```
 */
export function createClient(options: CoopClientOptions): CoopClient {
  const { token, baseUrl, ...rest } = options;
  const client = createFetchClient<paths>({ ...rest, baseUrl: baseUrl.replace(/\/+$/, "") });
  if (token !== undefined) {
    const bearer: Middleware = {
      async onRequest({ request }) {
        const value = await resolveToken(token);
        if (value && !request.headers.has("Authorization")) {
          request.headers.set("Authorization", `Bearer ${value}`);
        }
        return request;
      },
    };
    client.use(bearer);
  }
  return client;
}
