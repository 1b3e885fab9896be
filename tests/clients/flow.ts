// A merchant's integration through openapi-fetch, typed by openapi-typescript from our spec.
// `tsc --noEmit` must accept it: a field the spec misnames, a status it does not list or a
// body it types wrongly fails the build here, as it would in a merchant's.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/payrail";

type Payment = components["schemas"]["Payment"];

export async function flow(baseUrl: string, apiKey: string): Promise<Payment> {
  const client = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${apiKey}` },
  });
  const created = await client.POST("/v1/payments", {
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
    body: {
      amount: 4999,
      currency: "EUR",
      provider: "simulated",
      metadata: { order_id: "1042" },
      payment_method: {
        type: "card",
        card: { number: "4242424242424242", exp_month: 12, exp_year: 2030, cvc: "123" },
      },
    },
  });
  if (created.error) {
    throw new Error(`${created.error.error.code}: ${created.error.error.message}`);
  }
  const payment: Payment = created.data;
  const status: "pending" | "processing" | "succeeded" | "failed" | "cancelled" | "refunded" =
    payment.status;
  const fetched = await client.GET("/v1/payments/{id}", {
    params: { path: { id: payment.id } },
  });
  const list = await client.GET("/v1/payments", {
    params: { query: { limit: 10, "created[gte]": "2026-01-01T00:00:00Z" } },
  });
  const events = await client.GET("/v1/events", {
    params: { query: { "types[]": ["payment.succeeded", "refund.created"] } },
  });
  const refund = await client.POST("/v1/payments/{id}/refunds", {
    params: { path: { id: payment.id }, header: { "Idempotency-Key": crypto.randomUUID() } },
    body: { amount: 1000 },
  });
  const amount: number | undefined = refund.data?.amount;
  const description: string | null | undefined = fetched.data?.description;
  console.log(status, list.data?.data.length, events.data?.has_more, amount, description);
  return payment;
}

// What a webhook handler receives, by type.
export function onPaymentSucceeded(body: components["schemas"]["PaymentSucceededWebhook"]): string {
  const type: "payment.succeeded" = body.type;
  return `${type} ${body.data.id} ${body.data.amount} ${body.data.currency}`;
}
