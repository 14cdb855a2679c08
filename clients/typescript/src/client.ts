// A minimal typed client over the generated documents: every operation is sent by its
// hash (the server's trusted documents or automatic persisted queries), its variables and
// result typed from schema.graphql.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { BookOnceDocument, FirstPageDocument, type FirstPageQuery } from "./gql/graphql";

type Hashed = { __meta__?: { hash?: string } };

export class GraphQLRequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

export async function run<Result, Variables>(
  url: string,
  token: string,
  document: TypedDocumentNode<Result, Variables>,
  variables: Variables,
): Promise<Result> {
  const hash = (document as Hashed).__meta__?.hash;
  if (hash === undefined) {
    throw new GraphQLRequestError("the document has no persisted hash", undefined);
  }
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/graphql-response+json, application/json;q=0.9",
      Authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({
      variables,
      extensions: { persistedQuery: { version: 1, sha256Hash: hash } },
    }),
  });
  const body = (await response.json()) as {
    data?: Result | null;
    errors?: { message: string; extensions?: { code?: string } }[];
  };
  if (body.data === undefined || body.data === null) {
    const first = body.errors?.[0];
    throw new GraphQLRequestError(first?.message ?? `HTTP ${response.status}`, first?.extensions?.code);
  }
  return body.data;
}

/** Every scheduled appointment id of the guide's clinic, page after page. */
export async function scheduledIds(url: string, token: string): Promise<string[]> {
  const ids: string[] = [];
  let after: string | null = null;
  for (;;) {
    const page: FirstPageQuery = await run(url, token, FirstPageDocument, { after });
    ids.push(...page.appointments.edges.map((edge) => edge.node.id));
    if (!page.appointments.pageInfo.hasNextPage) {
      return ids;
    }
    after = page.appointments.pageInfo.endCursor ?? null;
  }
}

/** When the booked appointment starts, as a Date (DateTime arrives as an RFC 3339 string). */
export async function bookOnce(url: string, token: string): Promise<Date> {
  const result = await run(url, token, BookOnceDocument, {});
  const booked = result.createAppointment;
  if (booked.__typename !== "AppointmentSuccess") {
    throw new GraphQLRequestError(`not booked: ${booked.__typename}`, booked.__typename);
  }
  return new Date(booked.appointment.startsAt);
}
