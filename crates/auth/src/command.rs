//! `xcore auth disable|enable|delete EMAIL`: what an operator does to an account from the
//! command line, through the same flows as the API, so the account's sessions end on
//! every node.

use xcore_core::HookError;

use crate::Auth;

const USAGE: &str = "usage: xcore auth disable|enable|delete EMAIL";

/// Runs `xcore auth` with `args`, the words after `auth`.
// A command-line command: printing its result is its job.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(auth: Auth, args: Vec<String>) -> Result<(), HookError> {
    let [verb, email] = args.as_slice() else {
        return Err(format!("{USAGE}; got {args:?}").into());
    };
    let Some(account) = auth.accounts().by_email(email).await? else {
        return Err(format!("no account has the email `{email}`").into());
    };
    match verb.as_str() {
        "disable" => auth.set_active(account.id, false).await?,
        "enable" => auth.set_active(account.id, true).await?,
        "delete" => auth.delete_account(account.id).await?,
        _ => return Err(format!("{USAGE}; `{verb}` is not one of them").into()),
    }
    println!("{verb}d account {} ({})", account.id, account.email);
    Ok(())
}
