// Type declarations for tokenwire.js. Session events follow schemas/session_events.py
// (schema_version 2); readers must ignore fields they do not know.

export declare const VERSION: string;

/** A stream's connection state: connecting → live → (reconnecting → resumed)* → done | error;
 * "closed" after close(). An attached stream goes connecting → resumed. */
export type ConnectionState =
  | "connecting" | "live" | "reconnecting" | "resumed" | "done" | "error" | "closed";
export declare const STATES: readonly ConnectionState[];

// --- session events ----------------------------------------------------------------------------

interface SessionEventBase {
  schema_version: number;
  request_id: string;
  session_id: string;
  /** 1 for the first attempt; a retry starts attempt n + 1. */
  attempt: number;
  /** 0, 1, 2, … within one attempt. */
  seq: number;
  emitted_at: number;
}

export interface StartEvent extends SessionEventBase {
  type: "start";
  model: string;
  accepted_at: number;
}

/** A new attempt: everything the request said so far is void. */
export interface RetryEvent extends SessionEventBase {
  type: "retry";
  reason: string;
  delay_s: number;
}

export interface TokenEvent extends SessionEventBase {
  type: "token";
  text: string;
  received_at: number;
  logprobs?: Array<Record<string, unknown>> | null;
}

/** A fragment of tool call `index`: the first names `id` and `name`, each adds `arguments`. */
export interface ToolCallEvent extends SessionEventBase {
  type: "tool_call";
  index: number;
  id?: string | null;
  name?: string | null;
  arguments: string;
  received_at: number;
}

export interface RefusalEvent extends SessionEventBase {
  type: "refusal";
  text: string;
  received_at: number;
}

export interface ReasoningEvent extends SessionEventBase {
  type: "reasoning";
  text: string;
  received_at: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Counted by the worker (a cut, a cancel), not by the provider. */
  estimated: boolean;
}

export interface Timings {
  accepted_at: number;
  first_token_at?: number | null;
  finished_at: number;
  ttft_s?: number | null;
  duration_s: number;
}

/** An assembled tool call, as OpenAI's chat completions API writes one. */
export interface AssembledToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export type FinishReason =
  | "stop" | "length" | "tool_calls" | "content_filter" | "cancelled" | (string & {});

export interface DoneEvent extends SessionEventBase {
  type: "done";
  finish_reason: FinishReason;
  usage: Usage;
  timings: Timings;
  tool_calls: AssembledToolCall[];
}

export interface ErrorEvent extends SessionEventBase {
  type: "error";
  code: string;
  message: string;
  retryable: boolean;
  usage?: Usage | null;
}

export type SessionEvent =
  | StartEvent | RetryEvent | TokenEvent | ToolCallEvent | RefusalEvent | ReasoningEvent
  | DoneEvent | ErrorEvent;

// --- what the client gives back ----------------------------------------------------------------

/** A tool call as assembled so far (complete once the stream is done). */
export interface ToolCall {
  index: number;
  id: string | null;
  name: string;
  arguments: string;
}

export interface ChatResult {
  sessionId: string;
  requestId: string;
  text: string;
  reasoning: string;
  refusal: string;
  toolCalls: ToolCall[];
  attempt: number;
  /** null when alreadyFinished. */
  finishReason: FinishReason | null;
  usage: Usage | null;
  /** The done event; null when alreadyFinished. */
  event: DoneEvent | null;
  lastEventId: string | null;
  /** The stream started past the request's end (HTTP 204): nothing of it was read. */
  alreadyFinished: boolean;
}

/** What continues a session (`client.send({ session })`) or re-attaches to it. */
export interface SessionRef {
  sessionId: string;
  streamToken: string;
  writeToken: string | null;
  /** The last event id seen; the next request's stream starts after it. */
  lastEventId: string | null;
}

export interface CancelResult {
  /** 202: cancelling; 409: the request had already ended. */
  statusCode: 202 | 409;
  finished: boolean;
  body: {
    request_id?: string;
    session_id?: string;
    status?: "cancelling" | "finished";
    repeated?: boolean;
    finish_reason?: string;
    error?: { code: string; message: string };
  };
}

export interface ChatCallbacks {
  onState?(state: ConnectionState, stream: ChatStream): void;
  /** Every event of this request, before it is folded. */
  onEvent?(event: SessionEvent, stream: ChatStream): void;
  onStart?(event: StartEvent, stream: ChatStream): void;
  /** A piece of answer text; `stream.text` holds the attempt's text so far. */
  onToken?(text: string, stream: ChatStream, event: TokenEvent): void;
  /** The tool call `event.index` as assembled so far. */
  onToolCall?(call: ToolCall, stream: ChatStream, event: ToolCallEvent): void;
  onReasoning?(text: string, stream: ChatStream, event: ReasoningEvent): void;
  onRefusal?(text: string, stream: ChatStream, event: RefusalEvent): void;
  /** A new attempt began: text, reasoning, refusal and tool calls are already empty. */
  onRetry?(event: RetryEvent, stream: ChatStream): void;
  onDone?(result: ChatResult, stream: ChatStream): void;
  onError?(error: TokenwireError, stream: ChatStream): void;
}

export interface ClientOptions {
  /** The edge, e.g. "http://localhost:8000"; "" (default) is the page's own origin. */
  baseUrl?: string;
  /** The caller's credential (a JWT or an API key), asked for on every POST. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** A fixed credential instead of getToken. */
  token?: string;
  fetch?: typeof fetch;
  /** Before the first reconnect, doubled per failure (the stream's `retry:` replaces it). */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Failed connection attempts in a row before the stream gives up (error "reconnect_failed"). */
  maxReconnectAttempts?: number;
  /** No byte, not even a ping, for this long: reconnect (0: never). */
  idleTimeoutMs?: number;
  maxEventChars?: number;
  maxAnswerChars?: number;
}

/** Fields of tokenwire's chat request (OpenAI's chat completions body), passed as given. */
export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string | null | Array<Record<string, unknown>>;
  [field: string]: unknown;
}

export interface SendOptions {
  messages: ChatMessage[];
  /** A previous stream's `.session`: continue that session. */
  session?: SessionRef | null;
  signal?: AbortSignal;
  model?: string;
  tools?: Array<Record<string, unknown>>;
  max_tokens?: number;
  [field: string]: unknown;
}

export interface AttachOptions {
  sessionId: string;
  requestId: string;
  streamToken: string;
  /** Needed for cancel(). */
  writeToken?: string | null;
  /** Start after this event id (e.g. the `after` of the stream being re-attached: the whole
   * request again); none: from the session's beginning. */
  after?: string | null;
  eventsUrl?: string;
}

export declare class TokenwireError extends Error {
  name: "TokenwireError";
  /** The edge's error code, the session error event's code, or the client's own
   * ("reconnect_failed", "idle_timeout", "closed", "event_too_large", "answer_too_large"). */
  code: string;
  status: number | null;
  retryable: boolean;
  details: unknown;
  /** The session's error event, when that is what ended the stream. */
  event: ErrorEvent | null;
  retryAfterMs: number | null;
}

export declare class TokenwireClient {
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  send(options: SendOptions, callbacks?: ChatCallbacks): Promise<ChatStream>;
  attach(options: AttachOptions, callbacks?: ChatCallbacks): ChatStream;
  cancel(target: { sessionId: string; requestId: string; writeToken: string | null }
  ): Promise<CancelResult>;
}

export declare class ChatStream {
  readonly sessionId: string;
  readonly requestId: string;
  readonly streamToken: string;
  readonly writeToken: string | null;
  readonly eventsUrl: string;
  /** The event id this stream started after (null: the session's beginning). */
  readonly after: string | null;
  /** The last event id seen; a reconnect resumes after it. */
  readonly lastEventId: string | null;
  readonly state: ConnectionState | null;
  readonly finishReason: FinishReason | null;
  readonly reconnects: number;
  /** The current attempt's output so far. */
  readonly text: string;
  readonly reasoning: string;
  readonly refusal: string;
  readonly attempt: number;
  readonly toolCalls: ToolCall[];
  readonly session: SessionRef;
  /** Resolves at the request's done; rejects with a TokenwireError on its error event, when the
   * stream cannot go on, or with code "closed" after close(). */
  readonly done: Promise<ChatResult>;
  cancel(): Promise<CancelResult>;
  /** Stop following; the answer goes on and stays in the session (attach to read it again). */
  close(): void;
}

export interface SseMessage {
  id: string;
  event: string;
  data: string;
}

/** The text/event-stream parser the client uses, for callers with their own transport. */
export declare class SseParser {
  constructor(options: {
    onEvent(message: SseMessage): void;
    onRetry?(ms: number): void;
    maxEventChars?: number;
  });
  readonly lastEventId: string;
  push(text: string): void;
}
