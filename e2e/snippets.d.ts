// What the docs' TypeScript uses and says comes from elsewhere (see snippets.mjs).
type Task = import("./tasks-api").components["schemas"]["Task"];
/** The API's origin, NEXT_PUBLIC_API_URL (docs/frontend.md). */
declare const API: string;
/** The signed-in user's id, the token's `sub`. */
declare const userId: string;
/** A fresh JWT for the signed-in user (docs/frontend.md). */
declare function token(): Promise<string>;
// next is too large to install for this; its one function the docs use, as Next.js 15+ types it.
declare module "next/headers" {
  export function headers(): Promise<Headers>;
}
