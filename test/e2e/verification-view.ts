import type { FastifyInstance } from "fastify";

/**
 * A verification's delivery records as `GET /v1/verifications/{id}` shows them, asked with the
 * app's API key when it has one.
 */
export async function deliveriesOf<Delivery = Record<string, unknown>>(
  server: { fastify: FastifyInstance },
  id: string,
  apiKey?: string,
): Promise<Delivery[]> {
  const view = await server.fastify.inject({
    method: "GET",
    url: `/v1/verifications/${id}`,
    ...(apiKey === undefined ? {} : { headers: { authorization: `Bearer ${apiKey}` } }),
  });
  return view.json().deliveries;
}
