// The AI SDK's own client code (ai v5 and v7) against a real tokenwire edge: /v1/ui/chat.
//
// Run by tests/api/test_ui_chat_node.py, which starts the edge, worker and simulator and passes
// TOKENWIRE_EDGE_URL, TOKENWIRE_CALLER_JWT and TOKENWIRE_CASES (per SDK: prompts and what the
// simulator answers to each, exactly). The SDK parses every chunk with its schemas
// (DefaultChatTransport) and folds them (readUIMessageStream, AbstractChat); the raw chunks are
// also checked against the fields the SDK's uiMessageChunkSchema declares (its zod objects are
// loose, so an extra field would pass it silently) and for start -> delta -> end order.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, test } from "node:test";

import { cancelChat, tokenwireChatTransportOptions } from "tokenwire/ai-sdk";

const EDGE = process.env.TOKENWIRE_EDGE_URL;
const JWT = process.env.TOKENWIRE_CALLER_JWT;
const CASES = JSON.parse(process.env.TOKENWIRE_CASES ?? "{}");
const DEADLINE_MS = 30_000;
const require = createRequire(import.meta.url);

// --- what the SDK declares ----------------------------------------------------------------

/** Chunk type -> the field names its zod object declares, read from the SDK's own source. */
function declaredFields(packageName) {
  const path = require.resolve(packageName).replace(/index\.(c?js|mjs)$/, "index.mjs");
  let source;
  try {
    source = readFileSync(path, "utf8");
  } catch {
    source = readFileSync(require.resolve(packageName).replace(/[^/]+$/, "index.js"), "utf8");
  }
  const start = source.search(/uiMessageChunkSchema = /);
  const end = source.indexOf("function isDataUIMessageChunk", start);
  assert.ok(start > 0 && end > start, `uiMessageChunkSchema not found in ${packageName}`);
  const fields = new Map();
  for (const object of source.slice(start, end).split("looseObject(").slice(1)) {
    const type = /type:\s*[\w$]+\.literal\("([^"]+)"\)/.exec(object)?.[1];
    if (type == null) continue;
    const names = [...object.matchAll(/(\w+):\s*[\w$]+\./g)].map((m) => m[1]);
    fields.set(type, new Set(names));
  }
  return fields;
}

/** Every chunk has only declared fields; parts open, stream and close in order; [DONE] last. */
function checkChunks(chunks, declared) {
  assert.equal(chunks.at(-1), "[DONE]", "the stream ends with [DONE]");
  const open = new Set();
  const closed = new Set();
  for (const chunk of chunks.slice(0, -1)) {
    assert.equal(typeof chunk, "object", `a chunk is an object: ${chunk}`);
    const allowed = declared.get(chunk.type);
    assert.ok(allowed, `a chunk type the SDK declares: ${chunk.type}`);
    for (const key of Object.keys(chunk)) {
      assert.ok(allowed.has(key), `${chunk.type} declares no field ${key}`);
    }
    const [kind, phase] = chunk.type.split(/-(?=start$|delta$|end$)/);
    if ((kind === "text" || kind === "reasoning") && phase) {
      const key = `${kind}:${chunk.id}`;
      if (phase === "start") {
        assert.ok(!open.has(key) && !closed.has(key), `${key} starts once`);
        open.add(key);
      } else {
        assert.ok(open.has(key), `${chunk.type} of an open part ${key}`);
        if (phase === "end") {
          open.delete(key);
          closed.add(key);
        }
      }
    }
  }
  assert.deepEqual([...open], [], "every part is closed before the stream ends");
  assert.equal(chunks[0].type, "start");
}

// --- plumbing -------------------------------------------------------------------------------

/** A fetch that keeps each response's raw SSE chunks (and headers) for the checks. */
function recordingFetch() {
  const responses = [];
  const fetchAndRecord = async (input, init) => {
    const response = await fetch(input, init);
    const record = { url: String(input), status: response.status, headers: response.headers,
                     chunks: [], done: null };
    responses.push(record);
    if (response.body == null) return response;
    const [mine, theirs] = response.body.tee();
    record.done = collect(mine, record.chunks);
    return new Response(theirs, { status: response.status, headers: response.headers });
  };
  return { fetch: fetchAndRecord, responses };
}

async function collect(stream, into) {
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for await (const bytes of stream) {
      buffer += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (line.startsWith("data: ")) {
            const data = line.slice(6);
            into.push(data === "[DONE]" ? data : JSON.parse(data));
          }
        }
      }
    }
  } catch {
    // an aborted fetch: what arrived is kept
  }
}

function within(promise, what, ms = DEADLINE_MS) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

async function until(check, what) {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > DEADLINE_MS) throw new Error(`${what}: not within ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function chatId(name) {
  return `${name}-${Math.random().toString(36).slice(2)}`;
}

function userMessage(text) {
  return { id: `u-${Math.random().toString(36).slice(2)}`, role: "user",
           parts: [{ type: "text", text }] };
}

function textOf(message) {
  return message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
}

/** The text of the chat's answer so far ("" while it has none). */
function answerText(chat) {
  const last = chat.messages.at(-1);
  return last?.role === "assistant" ? textOf(last) : "";
}

async function fold(sdk, stream) {
  let last;
  for await (const message of sdk.readUIMessageStream({ stream, terminateOnError: true })) {
    last = message;
  }
  return last;
}

/** AbstractChat with a plain in-memory state: what useChat is, minus React. */
function chatClass(sdk) {
  return class MemoryChat extends sdk.AbstractChat {
    constructor({ messages = [], ...init }) {
      const state = {
        status: "ready", error: undefined, messages: [...messages],
        pushMessage(message) { this.messages = [...this.messages, message]; },
        popMessage() { this.messages = this.messages.slice(0, -1); },
        replaceMessage(index, message) {
          this.messages = this.messages.map((m, i) => (i === index ? message : m));
        },
        snapshot: (thing) => structuredClone(thing),
      };
      super({ ...init, state });
    }
  };
}

// --- the scenarios, once per SDK -------------------------------------------------------------

const SDKS = [["ai", "5"], ["ai-v7", "7"]];

for (const [packageName, major] of SDKS) {
  describe(`ai v${major} (${packageName})`, async () => {
    const sdk = await import(packageName);
    const cases = CASES[packageName];
    const declared = declaredFields(packageName);
    const Chat = chatClass(sdk);
    const transport = (recorder, extra = {}) => new sdk.DefaultChatTransport({
      ...tokenwireChatTransportOptions({ baseUrl: EDGE, getToken: () => JWT,
                                         fetch: recorder.fetch }),
      ...extra,
    });
    // A client without the stop wrapper: its abort is a dropped connection, not a stop.
    const droppingTransport = (recorder) => new sdk.DefaultChatTransport({
      api: `${EDGE}/v1/ui/chat`, headers: { authorization: `Bearer ${JWT}` },
      fetch: recorder.fetch,
    });

    test("a plain answer is exactly the simulator's text, in one text part", async () => {
      const recorder = recordingFetch();
      const id = chatId("plain");
      const stream = await transport(recorder).sendMessages({
        chatId: id, messages: [userMessage(cases.plain.prompt)], trigger: "submit-message",
        messageId: undefined, abortSignal: undefined,
      });
      const message = await within(fold(sdk, stream), "plain");
      const [response] = recorder.responses;
      await response.done;
      assert.equal(response.headers.get("x-vercel-ai-ui-message-stream"), "v1");
      assert.equal(message.id, `msg-${response.headers.get("x-tokenwire-request-id")}`);
      assert.equal(message.role, "assistant");
      assert.equal(textOf(message), cases.plain.text);
      assert.equal(message.parts.filter((p) => p.type === "text").length, 1);
      checkChunks(response.chunks, declared);
      assert.deepEqual(response.chunks.at(-2), { type: "finish", finishReason: "stop" });
      // Nothing is active any more: a resume is 204, which the transport gives as null.
      assert.equal(await transport(recorder).reconnectToStream({ chatId: id }), null);
    });

    test("resume of a chat that never ran is null (204)", async () => {
      const recorder = recordingFetch();
      assert.equal(await transport(recorder).reconnectToStream({ chatId: chatId("idle") }), null);
      assert.equal(recorder.responses[0].status, 204);
    });

    test("a tool call is a tool part with the exact input, and its result is answered", async () => {
      const { prompt, tool_calls: [expected], follow_up: followUp, output } = cases.tool;
      const recorder = recordingFetch();
      const calls = [];
      const chat = new Chat({
        id: chatId("tool"),
        transport: transport(recorder, {
          body: { tools: [{ type: "function", function: { name: expected.function.name,
                                                          parameters: { type: "object" } } }] },
        }),
        sendAutomaticallyWhen: sdk.lastAssistantMessageIsCompleteWithToolCalls,
        onToolCall: ({ toolCall }) => {
          calls.push(toolCall);
          // Not awaited, as the SDK's docs say: the chat waits for its own job queue.
          void chat.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId,
                                    output });
        },
      });
      await within(chat.sendMessage({ text: prompt }), "tool call");
      await until(() => chat.error != null || (recorder.responses.length === 2
                         && chat.status === "ready"), "follow-up");
      await Promise.all(recorder.responses.map((r) => r.done));
      assert.equal(chat.error, undefined, String(chat.error));
      assert.deepEqual(calls.map((c) => [c.toolCallId, c.toolName, c.input]),
                       [[expected.id, expected.function.name, JSON.parse(expected.function.arguments)]]);
      const [user, assistant, ...more] = chat.messages;
      assert.equal(user.role, "user");
      assert.deepEqual(more, [], "the answer to the tool result continues the same message");
      const tools = assistant.parts.filter((p) => p.type === `tool-${expected.function.name}`);
      assert.equal(tools.length, 1);
      assert.equal(tools[0].toolCallId, expected.id);
      assert.deepEqual(tools[0].input, JSON.parse(expected.function.arguments));
      assert.equal(tools[0].state, "output-available");
      assert.equal(textOf(assistant), followUp);
      for (const response of recorder.responses) checkChunks(response.chunks, declared);
      assert.deepEqual(recorder.responses[0].chunks.at(-2),
                       { type: "finish", finishReason: "tool-calls" });
      assert.deepEqual(recorder.responses[1].chunks[0],
                       { type: "start", messageId: assistant.id });
    });

    test("a retry after a cut gives exactly the answer, no part twice", async () => {
      const recorder = recordingFetch();
      const stream = await transport(recorder).sendMessages({
        chatId: chatId("cut"), messages: [userMessage(cases.cut.prompt)],
        trigger: "submit-message", messageId: undefined, abortSignal: undefined,
      });
      const message = await within(fold(sdk, stream), "cut");
      await recorder.responses[0].done;
      assert.equal(textOf(message), cases.cut.text);
      assert.equal(message.parts.filter((p) => p.type === "text").length, 1);
      checkChunks(recorder.responses[0].chunks, declared);
      assert.equal(recorder.responses[0].chunks.filter((c) => c.type === "text-start").length, 1);
    });

    test("useChat({ resume: true }) after a drop mid-answer gets the whole message, once", async () => {
      const id = chatId("resume");
      const dropped = recordingFetch();
      const before = new Chat({ id, transport: droppingTransport(dropped) });
      const sending = before.sendMessage({ text: cases.resume.prompt });
      // Past the cut: the worker has retried, the session holds both attempts.
      await until(() => before.error != null || answerText(before).length > cases.resume.cut_chars,
                  "text past the cut");
      assert.equal(before.error, undefined, String(before.error));
      await before.stop(); // aborts the fetch only: a page closing, a network drop
      await sending;
      const partial = structuredClone(before.messages);
      assert.equal(partial.length, 2);
      assert.ok(cases.resume.text.startsWith(textOf(partial[1])));
      assert.ok(textOf(partial[1]).length < cases.resume.text.length, "dropped mid-answer");

      // A new page: the persisted messages, and resumeStream() as useChat does on mount.
      const resumed = recordingFetch();
      const after = new Chat({ id, messages: partial, transport: transport(resumed) });
      await within(after.resumeStream(), "resume");
      await resumed.responses[0].done;
      assert.equal(resumed.responses[0].status, 200);
      assert.equal(after.error, undefined, String(after.error));
      assert.equal(after.messages.length, 2, "the message is replaced, not added");
      const [user, assistant] = after.messages;
      assert.deepEqual(user, partial[0]);
      assert.equal(assistant.id, partial[1].id);
      assert.equal(textOf(assistant), cases.resume.text);
      assert.equal(assistant.parts.filter((p) => p.type === "text").length, 1);
      checkChunks(resumed.responses[0].chunks, declared);
      assert.deepEqual(resumed.responses[0].chunks.filter((c) => c.type === "start"),
                       [{ type: "start", messageId: partial[1].id }]);
    });

    test("stop() cancels the answer: the request ends with abort, the text kept", async () => {
      const id = chatId("stop");
      const recorder = recordingFetch();
      const chat = new Chat({ id, transport: transport(recorder) });
      const sending = chat.sendMessage({ text: cases.stop.prompt });
      await until(() => chat.error != null || answerText(chat).length > 0, "first text");
      assert.equal(chat.error, undefined, String(chat.error));
      // A second reader of the same answer sees how it ends.
      const watcher = recordingFetch();
      const watching = await transport(watcher).reconnectToStream({ chatId: id });
      assert.notEqual(watching, null);
      const watched = fold(sdk, watching);
      await chat.stop();
      await sending;
      const message = await within(watched, "the cancelled end");
      await watcher.responses[0].done;
      const chunks = watcher.responses[0].chunks;
      checkChunks(chunks, declared);
      assert.deepEqual(chunks.slice(-3), [{ type: "finish-step" }, { type: "abort" }, "[DONE]"]);
      assert.ok(cases.stop.text.startsWith(textOf(message)));
      assert.ok(textOf(message).length < cases.stop.text.length);
      assert.equal(chat.status, "ready");
      assert.ok(cases.stop.text.startsWith(textOf(chat.messages[1])));
      // Already over: a second cancel is refused, and a resume finds nothing active.
      const again = await cancelChat({ baseUrl: EDGE, chatId: id, getToken: () => JWT });
      assert.equal(again.status, 409);
      assert.equal(await transport(recordingFetch()).reconnectToStream({ chatId: id }), null);
    });
  });
}
