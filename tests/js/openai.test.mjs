// The official `openai` npm package against a real tokenwire edge: /v1/chat/completions.
//
// Run by tests/api/test_openai_compat_node.py, which starts the edge, worker and simulator and
// passes TOKENWIRE_EDGE_URL, TOKENWIRE_CALLER_JWT, TOKENWIRE_MODEL and TOKENWIRE_CASES (prompts
// and what the simulator answers to each, exactly).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import OpenAI from "openai";

const EDGE = process.env.TOKENWIRE_EDGE_URL;
const MODEL = process.env.TOKENWIRE_MODEL;
const CASES = JSON.parse(process.env.TOKENWIRE_CASES ?? "{}");
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } } },
  },
};

const client = new OpenAI({
  baseURL: `${EDGE}/v1`,
  apiKey: process.env.TOKENWIRE_CALLER_JWT,
  maxRetries: 0,
  timeout: 60_000,
});
const user = (content) => [{ role: "user", content }];

describe("openai npm package against /v1/chat/completions", () => {
  test("a streamed answer is exact, with the tokenwire ids and a usage chunk", async () => {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: MODEL,
        messages: user(CASES.stream.prompt),
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    const requestId = response.headers.get("x-tokenwire-request-id");
    assert.ok(response.headers.get("x-tokenwire-session-id").startsWith("oa-"));
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text, CASES.stream.text);
    assert.deepEqual(new Set(chunks.map((c) => c.id)), new Set([`chatcmpl-${requestId}`]));
    assert.equal(chunks.at(-2).choices[0].finish_reason, "stop");
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.ok(chunks.at(-1).usage.total_tokens > 0);
  });

  test("a non-streamed answer is one chat.completion", async () => {
    const done = await client.chat.completions.create({
      model: MODEL,
      messages: user(CASES.plain.prompt),
    });
    assert.equal(done.object, "chat.completion");
    assert.equal(done.choices[0].message.content, CASES.plain.text);
    const again = await client.chat.completions.retrieve(done.id);
    assert.equal(again.choices[0].message.content, CASES.plain.text);
  });

  test("a tool call, streamed through the SDK's own assembler and not", async () => {
    const messages = user(CASES.tool.prompt);
    const done = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER] });
    assert.equal(done.choices[0].finish_reason, "tool_calls");
    assert.deepEqual(done.choices[0].message.tool_calls, CASES.tool.tool_calls);
    const runner = client.chat.completions.stream({ model: MODEL, messages, tools: [WEATHER] });
    const final = await runner.finalChatCompletion();
    const calls = final.choices[0].message.tool_calls.map(({ id, type, function: f }) => ({
      id, type, function: { name: f.name, arguments: f.arguments },
    }));
    assert.deepEqual(calls, CASES.tool.tool_calls);
  });

  test("errors are the SDK's typed errors with OpenAI's shape", async () => {
    const bad = new OpenAI({ baseURL: `${EDGE}/v1`, apiKey: "not-a-key", maxRetries: 0 });
    await assert.rejects(
      bad.chat.completions.create({ model: MODEL, messages: user("hi") }),
      (err) => err instanceof OpenAI.AuthenticationError && err.code === "invalid_api_key",
    );
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: user("hi"), n: 2 }),
      (err) => err instanceof OpenAI.BadRequestError && err.param === "n"
        && err.type === "invalid_request_error",
    );
    // The provider refuses after the stream started: an error in the stream, thrown.
    const stream = await client.chat.completions.create({
      model: MODEL, messages: user(CASES.refused.prompt), stream: true,
    });
    await assert.rejects(
      (async () => { for await (const _ of stream); })(),
      (err) => err instanceof OpenAI.APIError && err.error?.code === "http_400",
    );
  });
});
