import { ErrorNote } from './bits.js';
import { fragment, page, type Shell } from './layout.js';

export interface LoginModel {
  next: string;
  user: string;
  /** Why the person is here: their session ended, they logged out, or a failed attempt. */
  notice: string | null;
  error: { code: string; message: string } | null;
}

export function loginPage(shell: Shell, m: LoginModel): string {
  return page(
    shell,
    <section class="login" aria-labelledby="login-title">
      <h1 id="login-title">Log in to Ferry</h1>
      {m.notice ? <p class="notice">{m.notice}</p> : null}
      {m.error ? <ErrorNote code={m.error.code} message={m.error.message} /> : null}
      <form method="post" action="/login" class="stack-form">
        <input type="hidden" name="next" value={m.next} />
        <label for="login-user">User name</label>
        <input id="login-user" name="user" autocomplete="username" required value={m.user} maxLength={63} autofocus />
        <label for="login-password">Password</label>
        <input id="login-password" name="password" type="password" autocomplete="current-password" required maxLength={256} />
        <button type="submit" class="primary">
          Log in
        </button>
      </form>
    </section>,
  );
}

export function errorPage(shell: Shell, e: { status: number; code: string; message: string; hint?: string }): string {
  const title = e.status === 404 ? 'Not found' : e.status === 403 ? 'Not allowed' : 'Something went wrong';
  return page(
    shell,
    <section aria-labelledby="error-title">
      <h1 id="error-title">{title}</h1>
      <ErrorNote code={e.code} message={e.message} hint={e.hint} />
      <p>
        <a href="/fleet">Back to the fleet</a>
      </p>
    </section>,
  );
}

/** An error as the alert region shows it after an htmx request. */
export function errorAlert(e: { code: string; message: string; hint?: string }): string {
  return fragment(
    <div class="alert bad">
      <ErrorNote code={e.code} message={e.message} hint={e.hint} />
    </div>,
  );
}
