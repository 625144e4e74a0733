// The README's driver example, compiled by `npm run check`.
import { connectDriverSocket } from "../src/index.js";

export function drive(baseUrl: string, token: string): void {
  const driver = connectDriverSocket({ baseUrl, token });
  driver.onOpen(() => driver.send({ type: "location", lat: 40.7555, lng: -73.985 }));
  driver.send({ type: "status", status: "online", id: 1 }); // remembered even if not yet open
  driver.on("offer", (offer) => driver.send({ type: "accept", offer_id: offer.offer_id, id: 2 }));
  driver.on("error", (frame) => console.warn(frame.code, frame.detail, frame.ref));
}
