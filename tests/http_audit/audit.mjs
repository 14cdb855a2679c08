// The graphql-http reference audit of a GraphQL-over-HTTP server: prints one line per
// result that is not "ok" and, last, the counts as JSON. Usage: node audit.mjs URL
import { auditServer } from 'graphql-http';

const results = await auditServer({ url: process.argv[2] });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] += 1;
  if (result.status !== 'ok') {
    console.log(`${result.status} ${result.id} ${result.name}: ${result.reason}`);
  }
}
console.log(JSON.stringify(counts));
