// tokenwire.js: a small client for tokenwire's durable session streams (browsers and Node >= 20).
//
// No build step, no dependencies. It posts a chat (POST /v1/chat), follows the request's events
// on the session's SSE stream with exact resume (the last event id goes back as Last-Event-ID
// after a drop, with backoff), drops an attempt's partial output on `retry`, assembles tool calls
// from `tool_call` fragments and stops a generation with `cancel()`.
//
// Transport: fetch with a streaming body and the small SSE parser below, not EventSource. Node 20
// has no EventSource; EventSource cannot send Authorization (the stream token would sit in the
// URL, so in logs), cannot show a reconnect's status (204/401/416/429 all look alike: "error"),
// and its reconnect timing is the browser's. With fetch the client sends Last-Event-ID itself
// and decides per status: 204 = already finished, 401/403/416 = give up, 429/5xx = back off.

export const VERSION = "0.1.0";

/** Connection states, in the order a stream can pass through them. */
export const STATES = Object.freeze([
  "connecting", "live", "reconnecting", "resumed", "done", "error", "closed",
]);

const DEFAULTS = Object.freeze({
  reconnectDelayMs: 1000,      // before the first reconnect (the stream's `retry:` replaces it)
  maxReconnectDelayMs: 5000,   // backoff doubles up to this
  maxReconnectAttempts: 30,    // failed connection attempts in a row before giving up
  idleTimeoutMs: 45_000,       // no byte (not even a ping) for this long: the connection is dead
  maxEventChars: 4_000_000,    // one SSE event; more is a broken stream
  maxAnswerChars: 8_000_000,   // text + reasoning + refusal + tool arguments of one answer
});
const FATAL_STATUSES = new Set([400, 401, 403, 404, 410, 416, 422]);

/** Every failure the client reports: HTTP refusals, the session's `error` event, a dead stream. */
export class TokenwireError extends Error {
  constructor(message, { code = "error", status = null, retryable = false, details = null,
                         event = null, retryAfterMs = null } = {}) {
    super(message);
    this.name = "TokenwireError";
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    this.details = details;
    this.event = event;
    this.retryAfterMs = retryAfterMs;
  }
}

// --- SSE parsing -------------------------------------------------------------------------------

/**
 * The text/event-stream format (WHATWG HTML, "Parsing an event stream"), fed decoded text in any
 * pieces. Calls `onEvent({ id, event, data })` per dispatched event (id: the last event id so
 * far, as EventSource keeps it) and `onRetry(ms)` for a `retry:` field. At most `maxEventChars`
 * are buffered for one event.
 */
export class SseParser {
  constructor({ onEvent, onRetry = () => {}, maxEventChars = DEFAULTS.maxEventChars }) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.maxEventChars = maxEventChars;
    this.lastEventId = "";
    this.pending = "";         // text after the last line break
    this.skipLineFeed = false; // the previous piece ended in "\r": a "\n" first is the same break
    this.resetEvent();
  }

  resetEvent() {
    this.type = "";
    this.data = [];
    this.size = 0;
  }

  push(text) {
    if (this.skipLineFeed && text.startsWith("\n")) text = text.slice(1);
    this.skipLineFeed = false;
    let start = 0;
    const breaks = /\r\n|\r|\n/g;
    let match;
    while ((match = breaks.exec(text)) !== null) {
      if (match[0] === "\r" && match.index === text.length - 1) this.skipLineFeed = true;
      this.line(this.pending + text.slice(start, match.index));
      this.pending = "";
      start = breaks.lastIndex;
    }
    this.pending += text.slice(start);
    if (this.pending.length + this.size > this.maxEventChars) {
      throw new TokenwireError("an SSE event is larger than maxEventChars", { code: "event_too_large" });
    }
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return undefined;   // a comment: the edge's pings
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") {
      this.data.push(value);
      this.size += value.length + 1;
    } else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.onRetry(Number(value));
    return undefined;
  }

  dispatch() {
    const { type, data } = this;
    this.resetEvent();
    if (data.length === 0) return;
    this.onEvent({ id: this.lastEventId, event: type || "message", data: data.join("\n") });
  }
}

// --- one answer, folded ------------------------------------------------------------------------

/** A request's output as a reader folds it: per attempt, a `retry` drops all of it. */
class AnswerState {
  constructor(maxChars) {
    this.maxChars = maxChars;
    this.reset(1);
  }

  reset(attempt) {
    this.attempt = attempt;
    this.lastSeq = -1;
    this.text = "";
    this.reasoning = "";
    this.refusal = "";
    this.calls = new Map();   // index -> { index, id, name, arguments }
    this.size = 0;
  }

  /** False for an event already folded (a duplicate) or of an attempt already superseded. */
  isNew(event) {
    if (event.attempt < this.attempt) return false;
    if (event.attempt > this.attempt) return true;
    return event.seq > this.lastSeq;
  }

  grow(chars) {
    this.size += chars;
    if (this.size > this.maxChars) {
      throw new TokenwireError("the answer is larger than maxAnswerChars", { code: "answer_too_large" });
    }
  }

  addToolCall(fragment) {
    let call = this.calls.get(fragment.index);
    if (!call) {
      call = { index: fragment.index, id: null, name: "", arguments: "" };
      this.calls.set(fragment.index, call);
    }
    if (fragment.id) call.id = fragment.id;
    if (fragment.name) call.name += fragment.name;
    call.arguments += fragment.arguments || "";
    this.grow((fragment.name || "").length + (fragment.arguments || "").length);
    return { ...call };
  }

  /** done.tool_calls is the worker's own assembly: the last word on what was called. */
  setToolCalls(assembled) {
    this.calls = new Map(assembled.map((call, index) => [index, {
      index, id: call.id, name: call.function.name, arguments: call.function.arguments,
    }]));
  }

  toolCalls() {
    return [...this.calls.values()].sort((a, b) => a.index - b.index).map((call) => ({ ...call }));
  }
}

// --- helpers -----------------------------------------------------------------------------------

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function retryAfterMs(response) {
  const value = response.headers.get("retry-after");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

async function errorFrom(response, fallback) {
  const body = await response.json().catch(() => ({}));
  const error = (body && body.error) || {};
  return new TokenwireError(error.message || `${fallback}: HTTP ${response.status}`, {
    code: error.code || `http_${response.status}`,
    status: response.status,
    retryable: response.status === 429 || response.status >= 500,
    details: error.details ?? null,
    retryAfterMs: retryAfterMs(response),
  });
}

function joinUrl(baseUrl, path) {
  return `${String(baseUrl || "").replace(/\/+$/, "")}${path}`;
}

function safely(callback, ...args) {
  if (typeof callback !== "function") return;
  try {
    callback(...args);
  } catch (error) {
    // A UI bug must not end the stream; it is still reported.
    console.error("tokenwire: a callback threw", error);
  }
}

// --- the client --------------------------------------------------------------------------------

/** Posts chats and follows their answers. One client per caller credential and edge. */
export class TokenwireClient {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl] the edge, e.g. "http://localhost:8000" ("" = this origin)
   * @param {() => (string|null|Promise<string|null>)} [options.getToken] the caller's credential
   *   (JWT or API key), sent as Authorization: Bearer on POSTs
   * @param {string} [options.token] a fixed credential instead of getToken
   * @param {typeof fetch} [options.fetch]
   */
  constructor({ baseUrl = "", getToken, token, fetch: fetchImpl, ...options } = {}) {
    this.baseUrl = baseUrl;
    this.getToken = getToken || (() => token ?? null);
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this.options = { ...DEFAULTS, ...options };
  }

  async authorization() {
    const credential = await this.getToken();
    return credential ? { Authorization: `Bearer ${credential}` } : {};
  }

  /**
   * POST /v1/chat, then follow the answer. `session` (a previous stream's `.session`) continues
   * that session; other fields (model, tools, max_tokens, ...) go into the request body as given.
   * @returns {Promise<ChatStream>}
   */
  async send({ messages, session = null, signal, ...fields }, callbacks = {}) {
    const body = { ...fields, messages };
    const headers = { "Content-Type": "application/json", ...(await this.authorization()) };
    if (session) {
      body.session_id = session.sessionId;
      headers["X-Stream-Token"] = session.writeToken;
    }
    const response = await this.fetch(joinUrl(this.baseUrl, "/v1/chat"), {
      method: "POST", headers, body: JSON.stringify(body), signal,
    });
    if (response.status !== 202) throw await errorFrom(response, "the chat was not accepted");
    const accepted = await response.json();
    return new ChatStream(this, {
      sessionId: accepted.session_id,
      requestId: accepted.request_id,
      streamToken: accepted.stream_token,
      writeToken: accepted.write_token,
      eventsUrl: accepted.events_url,
      // The new request's events come after everything this session's last stream saw.
      after: session?.lastEventId ?? null,
    }, callbacks);
  }

  /**
   * Follow a request that was sent earlier (after a page reload, from another process). `after`
   * is an event id to start after (the stream reads the request's events that follow it; none:
   * from the session's beginning). The stream reports "resumed" once connected.
   * @returns {ChatStream}
   */
  attach({ sessionId, requestId, streamToken, writeToken = null, after = null, eventsUrl },
         callbacks = {}) {
    return new ChatStream(this, {
      sessionId, requestId, streamToken, writeToken, after,
      eventsUrl: eventsUrl || `/v1/sessions/${encodeURIComponent(sessionId)}/events`,
      resuming: true,
    }, callbacks);
  }

  /** POST the cancel endpoint: 202 (cancelling) and 409 (it had ended) both resolve. */
  async cancel({ sessionId, requestId, writeToken }) {
    if (!writeToken) {
      throw new TokenwireError("cancel needs the session's write token", { code: "no_write_token" });
    }
    const path = `/v1/sessions/${encodeURIComponent(sessionId)}/requests/`
      + `${encodeURIComponent(requestId)}/cancel`;
    const response = await this.fetch(joinUrl(this.baseUrl, path), {
      method: "POST", headers: { ...(await this.authorization()), "X-Stream-Token": writeToken },
    });
    if (response.status !== 202 && response.status !== 409) {
      throw await errorFrom(response, "the cancel was refused");
    }
    const body = await response.json().catch(() => ({}));
    // 409: the request had ended already (body.finish_reason says how).
    return { statusCode: response.status, finished: response.status === 409, body };
  }
}

/**
 * One request's answer as it streams. `done` resolves with the final result (rejects with a
 * TokenwireError on the session's `error` event or when the stream cannot go on).
 */
export class ChatStream {
  #client;
  #callbacks;
  #answer;
  #abort = new AbortController();   // ends everything: the connection, timers, the loop
  #settle;

  constructor(client, { sessionId, requestId, streamToken, writeToken = null, eventsUrl,
                        after = null, resuming = false }, callbacks = {}) {
    this.#client = client;
    this.#callbacks = callbacks;
    this.sessionId = sessionId;
    this.requestId = requestId;
    this.streamToken = streamToken;
    this.writeToken = writeToken;
    this.eventsUrl = eventsUrl;
    /** The event id this stream started after (null: the session's beginning). */
    this.after = after;
    /** The id of the last event seen on this stream (any request's); resume goes on after it. */
    this.lastEventId = after;
    this.state = null;
    this.finishReason = null;
    this.reconnects = 0;
    this.#answer = new AnswerState(client.options.maxAnswerChars);
    this.done = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    // Nobody has to await `done`: an error is also reported to onError.
    this.done.catch(() => {});
    this.#run(resuming).catch((error) => this.#finish("error", new TokenwireError(
      String(error?.message || error), { code: "client_error" },
    )));
  }

  get text() { return this.#answer.text; }
  get reasoning() { return this.#answer.reasoning; }
  get refusal() { return this.#answer.refusal; }
  get attempt() { return this.#answer.attempt; }
  get toolCalls() { return this.#answer.toolCalls(); }

  /** What a follow-up `client.send({ session })` needs; store it to re-attach after a reload. */
  get session() {
    return {
      sessionId: this.sessionId, streamToken: this.streamToken, writeToken: this.writeToken,
      lastEventId: this.lastEventId,
    };
  }

  /** Ask the worker to stop; the stream then ends with done, finish_reason "cancelled". */
  cancel() {
    return this.#client.cancel(this);
  }

  /** Stop following (the answer goes on being generated and stays in the session). */
  close() {
    this.#finish("closed", null);
  }

  get #ended() {
    return this.#abort.signal.aborted;
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    safely(this.#callbacks.onState, state, this);
  }

  #finish(state, outcome) {
    if (this.#ended) return;
    this.#abort.abort();
    this.#setState(state);
    if (outcome instanceof Error) {
      safely(this.#callbacks.onError, outcome, this);
      this.#settle.reject(outcome);
    } else if (state === "closed") {
      this.#settle.reject(new TokenwireError("the stream was closed", { code: "closed" }));
    } else {
      safely(this.#callbacks.onDone, outcome, this);
      this.#settle.resolve(outcome);
    }
  }

  #result(done) {
    const answer = this.#answer;
    return {
      sessionId: this.sessionId,
      requestId: this.requestId,
      text: answer.text,
      reasoning: answer.reasoning,
      refusal: answer.refusal,
      toolCalls: answer.toolCalls(),
      attempt: answer.attempt,
      finishReason: done ? done.finish_reason : null,
      usage: done ? done.usage : null,
      event: done,
      lastEventId: this.lastEventId,
      alreadyFinished: done === null,
    };
  }

  async #run(resuming) {
    const options = this.#client.options;
    let delayMs = options.reconnectDelayMs;
    let failures = 0;
    let connectedBefore = resuming;
    this.#setState("connecting");
    while (!this.#ended) {
      let outcome;
      try {
        outcome = await this.#connect(connectedBefore, (retryMs) => { delayMs = retryMs; });
      } catch (error) {
        outcome = { error };
      }
      if (this.#ended) return;
      if (outcome.opened) {
        connectedBefore = true;
        failures = 0;
      }
      const { error } = outcome;
      if (error && !worthRetrying(error)) {
        this.#finish("error", error instanceof TokenwireError ? error
          : new TokenwireError(String(error?.message || error), { code: "client_error" }));
        return;
      }
      failures += 1;
      if (failures > options.maxReconnectAttempts) {
        this.#finish("error", new TokenwireError(
          `the stream could not be resumed after ${options.maxReconnectAttempts} attempts`,
          { code: "reconnect_failed", retryable: true, details: { cause: String(error || "closed") } },
        ));
        return;
      }
      this.#setState("reconnecting");
      this.reconnects += 1;
      const backoff = Math.min(options.maxReconnectDelayMs, delayMs * 2 ** (failures - 1));
      const wait = error?.retryAfterMs ?? backoff * (0.8 + 0.4 * Math.random());
      await sleep(wait, this.#abort.signal);
    }
  }

  /** One connection: resolves when it ends ({opened, error?}); the answer may finish inside. */
  async #connect(connectedBefore, onRetry) {
    const attempt = new AbortController();
    const stop = () => attempt.abort();
    this.#abort.signal.addEventListener("abort", stop, { once: true });
    const options = this.#client.options;
    let idle = null;
    let opened = false;
    const touch = () => {
      clearTimeout(idle);
      if (options.idleTimeoutMs > 0) idle = setTimeout(stop, options.idleTimeoutMs);
    };
    try {
      touch();
      const params = new URLSearchParams({ until: "done", request_id: this.requestId });
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${this.streamToken}` };
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      const response = await this.#client.fetch(
        joinUrl(this.#client.baseUrl, `${this.eventsUrl}?${params}`),
        { headers, signal: attempt.signal },
      );
      if (response.status === 204) {
        // Our position is past the request's end: nothing more will come for it.
        this.#finish("done", this.#result(null));
        return { opened: true };
      }
      if (response.status !== 200) {
        const error = await errorFrom(response, "the stream was refused");
        if (!FATAL_STATUSES.has(response.status)) error.retryable = true;
        return { opened: false, error };
      }
      opened = true;
      this.#setState(connectedBefore ? "resumed" : "live");
      await this.#read(response.body, touch, onRetry);
      return { opened };
    } catch (error) {
      if (this.#ended) return { opened };
      // Our own idle abort, a dropped connection, a refused one: all are worth a reconnect.
      return { opened, error: attempt.signal.aborted ? idleError() : error };
    } finally {
      clearTimeout(idle);
      this.#abort.signal.removeEventListener("abort", stop);
      attempt.abort();   // releases the body's reader and the socket on every path
    }
  }

  async #read(body, touch, onRetry) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser({
      onEvent: (event) => this.#onSse(event),
      onRetry,
      maxEventChars: this.#client.options.maxEventChars,
    });
    try {
      while (!this.#ended) {
        const { value, done } = await reader.read();
        if (done) break;
        touch();
        parser.push(decoder.decode(value, { stream: true }));
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  #onSse({ id, event: type, data }) {
    if (this.#ended) return;
    if (id) this.lastEventId = id;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;   // not a session event (nothing the edge sends today)
    }
    if (!event || event.request_id !== this.requestId) return;
    safely(this.#callbacks.onEvent, event, this);
    this.#fold(type || event.type, event);
  }

  #fold(type, event) {
    const answer = this.#answer;
    if (type === "done" || type === "error") return this.#terminal(type, event);
    if (!answer.isNew(event)) return undefined;
    if (type === "retry" || event.attempt > answer.attempt) {
      // A new attempt: everything the old one said is void.
      answer.reset(event.attempt);
      if (type === "retry") safely(this.#callbacks.onRetry, event, this);
    }
    answer.lastSeq = event.seq;
    try {
      this.#output(type, event);
    } catch (error) {
      this.#finish("error", error);
    }
    return undefined;
  }

  #output(type, event) {
    const answer = this.#answer;
    const callbacks = this.#callbacks;
    if (type === "start") safely(callbacks.onStart, event, this);
    else if (type === "token") {
      answer.grow(event.text.length);
      answer.text += event.text;
      safely(callbacks.onToken, event.text, this, event);
    } else if (type === "reasoning") {
      answer.grow(event.text.length);
      answer.reasoning += event.text;
      safely(callbacks.onReasoning, event.text, this, event);
    } else if (type === "refusal") {
      answer.grow(event.text.length);
      answer.refusal += event.text;
      safely(callbacks.onRefusal, event.text, this, event);
    } else if (type === "tool_call") {
      safely(callbacks.onToolCall, answer.addToolCall(event), this, event);
    }
  }

  #terminal(type, event) {
    if (type === "done") {
      if (event.tool_calls && event.tool_calls.length) this.#answer.setToolCalls(event.tool_calls);
      this.finishReason = event.finish_reason;
      this.#finish("done", this.#result(event));
      return;
    }
    this.#finish("error", new TokenwireError(event.message, {
      code: event.code, retryable: Boolean(event.retryable), event,
    }));
  }
}

function idleError() {
  return new TokenwireError("no data on the stream for idleTimeoutMs", {
    code: "idle_timeout", retryable: true,
  });
}

function worthRetrying(error) {
  if (error instanceof TokenwireError) return error.retryable;
  // fetch rejects with a TypeError when it cannot connect or the body is cut (browsers and
  // undici alike; undici's names the socket error in `cause`): the network, not the caller.
  return error instanceof TypeError || error?.name === "AbortError" || error?.cause !== undefined;
}
