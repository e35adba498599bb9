// The console's calls to /console/api: reads with the session cookie, changes with the session's CSRF token too
// (the page carries it in <meta name="leash-csrf">). A 401 means the session ended: back to the sign-in page.
import type { OperatorAction, Overview, ResumeTarget, RevokeTarget } from './types.js';

/** The request was refused; `message` is the server's reason (shown to the operator). */
export class ApiError extends Error {
  override name = 'ApiError';
}

/** Thrown after sending the browser to the sign-in page; callers just stop. */
export class SignedOut extends Error {
  override name = 'SignedOut';
}

export const signOut = (): void => window.location.assign('/console');

function csrfToken(): string {
  const meta = document.querySelector('meta[name="leash-csrf"]');
  return meta?.getAttribute('content') ?? '';
}

async function answer(r: Response): Promise<unknown> {
  if (r.status === 401) {
    signOut();
    throw new SignedOut('signed out');
  }
  const body: unknown = await r.json().catch(() => ({}));
  if (!r.ok) {
    const error = typeof body === 'object' && body !== null && 'error' in body ? body.error : undefined;
    throw new ApiError(typeof error === 'string' ? error : `HTTP ${r.status}`);
  }
  return body;
}

// The server's answers are trusted to have the shape api.ts and stream.ts give them (same origin, same release).
const read = async <T>(path: string): Promise<T> =>
  (await answer(await fetch(path, { cache: 'no-store' }))) as T;

async function post<T>(path: string, body: object): Promise<T> {
  const r = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-leash-csrf': csrfToken() },
    body: JSON.stringify(body),
  });
  return (await answer(r)) as T;
}

export const getOverview = (): Promise<Overview> => read<Overview>('/console/api/overview');

/** The last operator actions, newest first (the server's default: 20). */
export async function getActions(): Promise<OperatorAction[]> {
  return (await read<{ actions: OperatorAction[] }>('/console/api/actions')).actions;
}

/** False (after sending the browser to sign in) when the session has ended; true otherwise, server away included. */
export async function sessionAlive(): Promise<boolean> {
  try {
    await read('/console/api/session');
  } catch (e) {
    if (e instanceof SignedOut) return false;
  }
  return true;
}

/** Revokes a key, a run or an agent; answers the ids revoked now (none when all were revoked or expired). */
export async function revoke(target: RevokeTarget, reason: string): Promise<string[]> {
  const r = await post<{ revoked: string[] }>('/console/api/revoke', reason ? { ...target, reason } : target);
  return r.revoked;
}

/** Resumes a paused key, run, agent or policy; answers false when it was not paused (any more). */
export async function resume(target: ResumeTarget): Promise<boolean> {
  return (await post<{ resumed: boolean }>('/console/api/resume', target)).resumed;
}

/** Approves or denies a pending request, with the operator's note if any. */
export async function decide(id: string, action: 'approve' | 'deny', note: string): Promise<void> {
  await post(`/console/api/approvals/${encodeURIComponent(id)}/${action}`, note ? { note } : {});
}
