/** Where a command writes; tests pass their own to run commands in-process. */
export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  stdin?: () => Promise<string>;
  isTTY: boolean;
  /** The terminal's width, when stdout is one. */
  columns?: number;
  /** Asks the person at the terminal and resolves with their answer; absent unless stdin and stdout are terminals. */
  ask?: (question: string) => Promise<string>;
}
