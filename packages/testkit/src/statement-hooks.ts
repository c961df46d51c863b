import type { KyselyPlugin, QueryId } from 'kysely';

/**
 * A Kysely plugin that calls `then` once a raw statement whose SQL contains `fragment` has run,
 * before its caller sees the answer, for the first `times` such statements: to lose that answer
 * (`then` throws, as a dropped session would after the statement committed), or to do, on
 * another session, what could happen in between (a retention pass, a replay).
 */
export function whenAnswered(fragment: string, then: () => Promise<void>, times = 1): KyselyPlugin {
  const matched = new Set<QueryId>();
  let left = times;
  return {
    transformQuery: (args) => {
      const node = args.node as { kind: string; sqlFragments?: readonly string[] };
      if (node.kind === 'RawNode' && node.sqlFragments?.join('?').includes(fragment)) matched.add(args.queryId);
      return args.node;
    },
    transformResult: async (args) => {
      if (matched.delete(args.queryId) && left > 0) {
        left--;
        await then();
      }
      return args.result;
    },
  };
}
