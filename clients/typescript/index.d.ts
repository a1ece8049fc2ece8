// Types of the Harness agent SDK (harness-sdk). Messages use the
// lowerCamelCase field names of the proto3 JSON mapping (taskId, ...),
// int64 as number, enums as their names ("TASK_STATE_RUNNING").
import { EventEmitter } from "events";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };
export type Message = { [field: string]: any };

export interface ClientOptions {
  /** An API key (hsk_...) or access token, sent as "authorization: Bearer ...". */
  apiKey?: string;
  token?: string;
  /** Login with these; the access token is refreshed before it expires. */
  email?: string;
  password?: string;
  refreshToken?: string;
  /** TLS with the system roots; any tls* option implies TLS. */
  tls?: boolean;
  tlsCa?: string | Buffer;
  tlsCert?: string | Buffer;
  tlsKey?: string | Buffer;
  tlsServerName?: string;
  /** Deadline of every unary call (default 15000). */
  timeoutMs?: number;
  /** Retries of UNAVAILABLE with exponential backoff and jitter (default 6). */
  retries?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Follow harness-node-address once (default true): a call answered
   * UNAVAILABLE naming the node that holds its object is sent there. */
  follow?: boolean;
}

export interface CallOptions {
  timeoutMs?: number;
  retry?: boolean;
  auth?: boolean;
}

/** client.tasks.GetTask({taskId}) -> Promise<Task>; streaming methods resolve to the call. */
export type ServiceProxy = { [method: string]: (request?: Message, opts?: CallOptions) => Promise<any> };

export class HarnessError extends Error {
  method: string;
  /** grpc.status number */
  code: number;
  codeName: string;
  details: string;
  /** machine-readable reason (trailing metadata hs-error-code), or "" */
  reason: string;
}

export class Client {
  constructor(target: string, opts?: ClientOptions);
  readonly auth: ServiceProxy;
  readonly sandboxes: ServiceProxy;
  readonly checkpoints: ServiceProxy;
  readonly tasks: ServiceProxy;
  login(email?: string, password?: string): Promise<Message>;
  refresh(): Promise<Message>;
  call(service: string, method: string, request?: Message, opts?: CallOptions): Promise<Message>;
  stream(service: string, method: string, request?: Message, opts?: CallOptions): Promise<AsyncIterable<Message> & EventEmitter & { cancel(): void }>;
  close(): void;
}

export class Cancelled extends Error {}
export class Fenced extends Error {}

export interface AgentOptions {
  totalSteps?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  workspace?: string;
  sandboxId?: string;
  labels?: { [k: string]: string };
  recoveryPolicy?: { maxAttempts?: number; initialBackoffMs?: number; backoffMultiplier?: number; maxBackoffMs?: number };
  /** Re-register a COMPLETED or CANCELLED task instead of returning / throwing Cancelled. */
  rerun?: boolean;
  onResume?: ResumeCallback;
}

export type ResumeCallback = (step: number, externalState: { [k: string]: JsonValue }) => void | Promise<void>;

export interface RunOptions {
  /** The state to checkpoint with each step (or a function returning it). */
  externalState?: { [k: string]: JsonValue } | (() => { [k: string]: JsonValue });
  checkpointEvery?: number;
  description?: (step: number) => string;
  /** CompleteTask at the end (default true). */
  complete?: boolean;
}

export class Agent extends EventEmitter {
  constructor(client: Client, taskId: string, opts?: AgentOptions);
  readonly taskId: string;
  readonly generation: number;
  readonly fenced: boolean;
  alreadyCompleted: boolean;
  details: string;
  task: Message | null;
  onResume(fn: ResumeCallback): ResumeCallback;
  /** Throws Fenced (or Cancelled) when the workspace must not be touched now. */
  check(): void;
  start(): Promise<boolean>;
  stop(): Promise<void>;
  heartbeat(opts?: { retry?: boolean }): Promise<Message>;
  checkpoint(step: number, externalState?: { [k: string]: JsonValue }, description?: string): Promise<Message>;
  complete(success?: boolean, message?: string): Promise<Message>;
  run(work: (step: number) => void | Promise<void>, opts?: RunOptions): Promise<number>;
  on(event: "heartbeat", fn: (resp: Message) => void): this;
  on(event: "checkpoint", fn: (checkpoint: Message) => void): this;
  on(event: "heartbeatError", fn: (err: Error) => void): this;
  on(event: string, fn: (...args: any[]) => void): this;
}

export function toStruct(obj: { [k: string]: JsonValue }): Message;
export function fromStruct(s: Message): { [k: string]: JsonValue };
