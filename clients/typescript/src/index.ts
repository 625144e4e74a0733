export { createClient, type CoopClient, type CoopClientOptions, type TokenSource } from "./client.js";
export {
  backoffDelayMs,
  connectDriverSocket,
  connectRiderSocket,
  CoopSocket,
  DriverSocket,
  FINAL_CLOSE_CODES,
  RiderSocket,
  type BackoffOptions,
  type CloseInfo,
  type SocketOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./socket.js";
export type * from "./generated/frames.js";
export type { components, operations, paths } from "./generated/api.js";
