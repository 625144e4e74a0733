// The README's example, compiled by `npm run check` so it cannot drift from the API.
import { createClient, connectRiderSocket, type TripOut } from "../src/index.js";

export async function rideHome(baseUrl: string, token: string): Promise<void> {
  const api = createClient({ baseUrl, token });
  const pickup = { lat: 40.7549, lng: -73.984 };
  const dropoff = { lat: 40.7465, lng: -74.0014 };

  // 1. A quote: the fare, fixed for a while.
  const quote = await api.POST("/v1/quotes", { body: { pickup, dropoff } });
  if (quote.error) throw new Error(`${quote.error.title}: ${quote.error.detail}`);
  console.log(`fare ${quote.data.fare.total_cents} cents, quote valid until ${quote.data.quote_expires_at}`);

  // 2. Listen before requesting, so no trip.updated is missed.
  const socket = connectRiderSocket({ baseUrl, token });
  socket.on("trip.updated", (frame) => {
    const trip: TripOut = frame.trip;
    console.log(`trip ${trip.id} is ${trip.status} (event ${frame.event_id})`);
    if (trip.status === "completed" || trip.status === "cancelled") socket.close();
  });
  socket.on("driver.location", (frame) => console.log(`driver at ${frame.lat},${frame.lng}, eta ${frame.eta_s} s`));
  socket.on("resync", () => void api.GET("/v1/riders/me/trips")); // events were missed: refetch
  socket.onClose(({ code, willReconnect, delayMs }) =>
    console.log(`socket closed (${code}); ${willReconnect ? `retrying in ${delayMs} ms` : "giving up"}`),
  );

  // 3. Request the trip at the quoted price (the Idempotency-Key makes a retry safe).
  const trip = await api.POST("/v1/trips", {
    body: { pickup, dropoff, quote_id: quote.data.quote_id },
    params: { header: { "idempotency-key": crypto.randomUUID() } },
  });
  if (trip.error) throw new Error(`${trip.error.title}: ${trip.error.detail}`);
  console.log(`requested ${trip.data.id}`);
}
