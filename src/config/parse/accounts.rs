//! `user`, `group`, `listen.owner` and `listen.group` must name accounts that exist: php-fpm
//! looks every name up while it tests its config, also when it does not run as root, and
//! refuses the config (`cannot get uid for user 'x'`) when the lookup fails. A value made
//! only of digits is taken as a numeric ID and not looked up.

use super::*;

/// Which account database a directive names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Account {
    User,
    Group,
}

/// The directives php-fpm resolves to IDs, in the order it checks them.
const ACCOUNT_DIRECTIVES: &[(&str, Account)] = &[
    ("user", Account::User),
    ("group", Account::Group),
    ("listen.owner", Account::User),
    ("listen.group", Account::Group),
];

impl Loader<'_> {
    /// Reports every account name of the pool that does not resolve, at its line.
    pub(super) fn check_accounts(&mut self, raw: &RawPool) {
        for &(key, account) in ACCOUNT_DIRECTIVES {
            let Some(name) = raw.section.text(key) else {
                continue;
            };
            if let Some(message) = unresolvable(name, account, lookup) {
                self.pool_problem(raw, Some(key), message);
            }
        }
    }
}

/// Whether the account database knows `name`; a failed lookup counts as unknown, as in
/// php-fpm (`getpwnam`/`getgrnam` returning nothing).
fn lookup(name: &str, account: Account) -> bool {
    match account {
        Account::User => matches!(nix::unistd::User::from_name(name), Ok(Some(_))),
        Account::Group => matches!(nix::unistd::Group::from_name(name), Ok(Some(_))),
    }
}

/// php-fpm's message for a name it cannot resolve; `None` when it resolves, is empty (unset)
/// or is numeric. `exists` answers the lookup.
fn unresolvable(
    name: &str,
    account: Account,
    exists: impl Fn(&str, Account) -> bool,
) -> Option<String> {
    if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) || exists(name, account) {
        return None;
    }
    Some(match account {
        Account::User => format!("cannot get uid for user '{name}'"),
        Account::Group => format!("cannot get gid for group '{name}'"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{files, problems};
    use super::*;

    #[test]
    fn names_are_looked_up_and_numbers_are_not() {
        let none = |_: &str, _: Account| false;
        let all = |_: &str, _: Account| true;
        assert_eq!(
            unresolvable("ghost", Account::User, none).as_deref(),
            Some("cannot get uid for user 'ghost'")
        );
        assert_eq!(
            unresolvable("ghosts", Account::Group, none).as_deref(),
            Some("cannot get gid for group 'ghosts'")
        );
        assert_eq!(unresolvable("12345", Account::User, none), None);
        assert_eq!(unresolvable("", Account::Group, none), None);
        assert_eq!(unresolvable("www-data", Account::User, all), None);
    }

    #[test]
    fn unknown_accounts_are_reported_at_their_lines() {
        let dir = files(&[(
            "main.conf",
            "[www]\nlisten = {dir}/www.sock\npm = static\npm.max_children = 1\n\
             user = fpmctl-no-such-user\ngroup = fpmctl-no-such-group\n\
             listen.owner = root\nlisten.group = fpmctl-no-such-group\n",
        )]);
        let found = problems(dir.path());
        let lines: Vec<usize> = found.iter().map(|p| p.1).collect();
        assert_eq!(lines, [5, 6, 8], "{found:?}");
        assert!(
            found[0]
                .2
                .contains("cannot get uid for user 'fpmctl-no-such-user'")
        );
        assert!(
            found[1]
                .2
                .contains("cannot get gid for group 'fpmctl-no-such-group'")
        );
        assert!(found[2].2.contains("pool 'www'"), "{found:?}");
    }
}
