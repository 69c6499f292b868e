// tokenwire.js (clients/js, imported as the "tokenwire" package) against a real edge, worker and
// simulator. Run by tests/api/test_tokenwire_client_node.py, which passes the edge URL, a caller
// JWT and, per scenario, a prompt with the exact answer the simulator gives to it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { SseParser, TokenwireClient, TokenwireError } from "tokenwire";

const EDGE = process.env.TOKENWIRE_EDGE_URL;
const CALLER = process.env.TOKENWIRE_CALLER_JWT;
const CASES = JSON.parse(process.env.TOKENWIRE_CASES || "{}");
const DEADLINE_MS = 60_000;

const user = (text) => [{ role: "user", content: text }];

function client(options = {}) {
  return new TokenwireClient({ baseUrl: EDGE, getToken: () => CALLER, reconnectDelayMs: 100,
                               ...options });
}

/** The callbacks a UI would pass, recording everything they are told. */
function recorder() {
  const seen = { states: [], tokens: [], toolCalls: [], retries: [], textAtRetry: [],
                 reasoning: "", errors: [], done: [] };
  const callbacks = {
    onState: (state) => seen.states.push(state),
    onToken: (text) => seen.tokens.push(text),
    onToolCall: (call) => seen.toolCalls.push(call),
    onReasoning: (text) => { seen.reasoning += text; },
    onRetry: (event, chat) => {
      seen.retries.push(event);
      seen.textAtRetry.push(chat.text);
    },
    onDone: (result) => seen.done.push(result),
    onError: (error) => seen.errors.push(error),
  };
  return { seen, callbacks };
}

function within(promise, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no end within ${DEADLINE_MS} ms`)),
                       DEADLINE_MS);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function until(check, what) {
  return within(new Promise((resolve) => {
    const poll = () => (check() ? resolve() : setTimeout(poll, 20));
    poll();
  }), what);
}

/** fetch as it is, except that the first events stream is cut after `tokens` token events
 * (the connection drops as a proxy or a flaky network drops it); records each events request's
 * Last-Event-ID. */
function droppingFetch(tokens) {
  const log = { lastEventIds: [], dropped: false };
  const impl = async (url, init = {}) => {
    const response = await fetch(url, init);
    if (!String(url).includes("/events")) return response;
    log.lastEventIds.push(init.headers?.["Last-Event-ID"] ?? null);
    if (log.dropped || response.status !== 200) return response;
    log.dropped = true;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let seen = 0;
    const body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        controller.enqueue(value);
        seen += decoder.decode(value, { stream: true }).split("event: token").length - 1;
        if (seen >= tokens) {
          reader.cancel().catch(() => {});
          controller.error(new TypeError("connection dropped by the test"));
        }
        return undefined;
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { impl, log };
}

describe("tokenwire.js against a real edge", { concurrency: true }, () => {
  test("send streams the exact text, with live then done states", async () => {
    const { prompt, text } = CASES.plain;
    const { seen, callbacks } = recorder();
    const chat = await client().send({ messages: user(prompt) }, callbacks);
    assert.match(chat.sessionId, /^[0-9a-f]{32}$/);
    const result = await within(chat.done, "plain");
    assert.equal(result.text, text);
    assert.equal(seen.tokens.join(""), text);
    assert.equal(chat.text, text);
    assert.equal(result.finishReason, "stop");
    assert.equal(result.requestId, chat.requestId);
    assert.deepEqual(seen.states, ["connecting", "live", "done"]);
    assert.match(chat.lastEventId, /^[0-9a-f]{16}-[0-9]+$/);
    assert.equal(seen.done.length, 1);
  });

  test("tool calls are assembled from their fragments", async () => {
    const { prompt, tool_calls: expected } = CASES.tools;
    const { seen, callbacks } = recorder();
    const chat = await client().send({ messages: user(prompt) }, callbacks);
    const result = await within(chat.done, "tools");
    const want = expected.map((call, index) => ({
      index, id: call.id, name: call.function.name, arguments: call.function.arguments,
    }));
    assert.equal(result.finishReason, "tool_calls");
    assert.deepEqual(result.toolCalls, want);
    // What onToolCall said last per index, before done's own assembly replaced it.
    const lastSeen = new Map(seen.toolCalls.map((call) => [call.index, call]));
    assert.deepEqual([...lastSeen.values()].sort((a, b) => a.index - b.index), want);
    assert.ok(seen.toolCalls.length >= want.length);
    assert.deepEqual(JSON.parse(result.toolCalls[0].arguments), { city: "Paris", unit: "c" });
  });

  test("a retry after a cut drops the partial text: the final text is exact", async () => {
    const { prompt, text } = CASES.cut;
    const { seen, callbacks } = recorder();
    const chat = await client().send({ messages: user(prompt) }, callbacks);
    const result = await within(chat.done, "cut");
    assert.equal(seen.retries.length, 1);
    assert.equal(seen.retries[0].type, "retry");
    assert.equal(result.attempt, 2);
    // Whatever the cut attempt had said was gone when onRetry ran.
    assert.deepEqual(seen.textAtRetry, [""]);
    assert.equal(result.text, text);
    assert.equal(chat.text, text);
    // The cut attempt's tokens did arrive (the same words: the simulator is deterministic),
    // and were dropped, not kept in front of the new attempt's.
    const told = seen.tokens.join("");
    const partial = told.slice(0, told.length - text.length);
    assert.ok(partial.length > 0 && text.startsWith(partial), JSON.stringify({ partial }));
  });

  test("a dropped connection resumes after the last event id with the exact text", async () => {
    const { prompt, text } = CASES.dropped;
    const dropping = droppingFetch(3);
    const { seen, callbacks } = recorder();
    const chat = await client({ fetch: dropping.impl }).send({ messages: user(prompt) }, callbacks);
    const result = await within(chat.done, "dropped");
    assert.equal(result.text, text);
    assert.equal(seen.tokens.join(""), text, "no token twice, none lost");
    assert.ok(dropping.log.dropped);
    const [first, second] = dropping.log.lastEventIds;
    assert.equal(first, null);
    assert.match(second, /^[0-9a-f]{16}-[0-9]+$/);
    assert.deepEqual(seen.states, ["connecting", "live", "reconnecting", "resumed", "done"]);
    assert.equal(chat.reconnects, 1);
  });

  test("cancel stops the generation: done is cancelled with a prefix of the answer", async () => {
    const { prompt, text } = CASES.cancel;
    const chat = await client().send({ messages: user(prompt) });
    await until(() => chat.text.length > 10, "cancel: first tokens");
    const cancelled = await chat.cancel();
    assert.equal(cancelled.statusCode, 202);
    assert.equal(cancelled.body.status, "cancelling");
    const result = await within(chat.done, "cancel");
    assert.equal(result.finishReason, "cancelled");
    assert.ok(text.startsWith(result.text));
    assert.ok(result.text.length > 10 && result.text.length < text.length);
    // The request has ended: a second cancel says so.
    const again = await chat.cancel();
    assert.ok(again.finished || again.body.repeated === true);
  });

  test("attach re-reads a running answer from its start; past its end it is already done",
    async () => {
      const { prompt, text } = CASES.attach;
      const tw = client();
      const first = await tw.send({ messages: user(prompt) });
      await until(() => first.text.length > 5, "attach: first tokens");
      first.close();
      await assert.rejects(first.done, (error) => error.code === "closed");
      assert.equal(first.state, "closed");

      const { seen, callbacks } = recorder();
      const again = tw.attach({
        sessionId: first.sessionId, requestId: first.requestId, streamToken: first.streamToken,
        writeToken: first.writeToken, after: first.after,
      }, callbacks);
      const result = await within(again.done, "attach");
      assert.equal(result.text, text);
      assert.deepEqual(seen.states, ["connecting", "resumed", "done"]);

      const late = tw.attach({
        sessionId: first.sessionId, requestId: first.requestId, streamToken: first.streamToken,
        after: result.lastEventId,
      });
      const over = await within(late.done, "attach past the end");
      assert.equal(over.alreadyFinished, true);
      assert.equal(over.finishReason, null);
    });

  test("a follow-up in the same session streams only the new answer", async () => {
    const tw = client();
    const first = await tw.send({ messages: user(CASES.first.prompt) });
    const one = await within(first.done, "first turn");
    assert.equal(one.text, CASES.first.text);
    const messages = [...user(CASES.first.prompt), { role: "assistant", content: one.text },
                      ...user(CASES.second.prompt)];
    const { seen, callbacks } = recorder();
    const second = await tw.send({ messages, session: first.session }, callbacks);
    assert.equal(second.sessionId, first.sessionId);
    assert.equal(second.after, first.lastEventId);
    const two = await within(second.done, "second turn");
    assert.equal(two.text, CASES.second.text);
    assert.equal(seen.tokens.join(""), CASES.second.text);
  });

  test("a refused stream token is an error, not an endless reconnect", async () => {
    const { seen, callbacks } = recorder();
    const chat = client().attach({ sessionId: "s-nobody", requestId: "r-none",
                                   streamToken: "not-a-token" }, callbacks);
    await assert.rejects(within(chat.done, "refused"), (error) => {
      assert.ok(error instanceof TokenwireError);
      assert.equal(error.status, 401);
      return true;
    });
    assert.equal(seen.errors.length, 1);
    assert.equal(chat.state, "error");
  });

  test("a refused chat throws its status and code", async () => {
    const tw = new TokenwireClient({ baseUrl: EDGE, token: "not-a-credential" });
    await assert.rejects(tw.send({ messages: user("hi") }), (error) => {
      assert.equal(error.status, 401);
      assert.equal(error.code, "unauthorized");
      return true;
    });
  });
});

describe("SseParser", () => {
  test("any split of the wire gives the same events, ids and retry", () => {
    const wire = "retry: 1500\r\n\r\n: ping\n\nid: e-1\nevent: token\ndata: {\"a\":\n"
      + "data: 1}\n\nid: e-2\r\nevent: done\r\ndata: x\r\n\r\n";
    const expected = [
      { id: "e-1", event: "token", data: "{\"a\":\n1}" },
      { id: "e-2", event: "done", data: "x" },
    ];
    for (let size = 1; size <= wire.length; size += 1) {
      const events = [];
      const retries = [];
      const parser = new SseParser({ onEvent: (e) => events.push(e), onRetry: (ms) => retries.push(ms) });
      for (let i = 0; i < wire.length; i += size) parser.push(wire.slice(i, i + size));
      assert.deepEqual(events, expected, `pieces of ${size}`);
      assert.deepEqual(retries, [1500]);
    }
  });

  test("an event larger than the bound is refused, not buffered", () => {
    const parser = new SseParser({ onEvent: () => {}, maxEventChars: 100 });
    assert.throws(() => parser.push(`data: ${"x".repeat(200)}`), /maxEventChars/);
  });
});
