//! `include = GLOB`: expanding the pattern like glob(3) and reading the matches in place.

use super::*;

impl Loader<'_> {
    /// `include = PATTERN`: a relative pattern is taken from the prefix; matches are read in
    /// sorted order, directories skipped. A pattern matching nothing is only a warning.
    pub(super) fn include(&mut self, pattern: &str, at: &Location, depth: usize) {
        let pattern = self.resolve(pattern, &self.default_prefix);
        match expand_glob(&pattern) {
            Err(message) => self.problem(Some(at), message),
            Ok(paths) if paths.is_empty() => self.warnings.push(Problem {
                at: Some(at.clone()),
                message: format!("nothing matches the include pattern '{pattern}'"),
            }),
            Ok(paths) => {
                for path in paths.iter().filter(|p| !p.is_dir()) {
                    self.load_file(path, depth + 1, Some(at));
                }
            }
        }
    }
}

/// Expands an include pattern like glob(3) with `GLOB_ERR`, as php-fpm does: matches sorted
/// bytewise; a hidden file matches only a pattern that spells out the dot; a directory that
/// the pattern must search but which cannot be read is an error.
pub(super) fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let entries = glob::glob_with(pattern, options)
        .map_err(|e| format!("invalid include pattern '{pattern}': {e}"))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| format!("cannot expand include pattern '{pattern}': {e}"))?);
    }
    if paths.is_empty()
        && let Some(dir) = unreadable_search_dir(pattern)
    {
        return Err(format!(
            "cannot expand include pattern '{pattern}': directory {dir} does not exist"
        ));
    }
    paths.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(paths)
}

/// The directory before the first wildcard of `pattern`, when it does not exist (glob(3)
/// then fails instead of matching nothing).
pub(super) fn unreadable_search_dir(pattern: &str) -> Option<String> {
    let wildcard = pattern.find(['*', '?', '['])?;
    let dir = match pattern[..wildcard].rfind('/') {
        Some(0) => "/",
        Some(slash) => &pattern[..slash],
        None => ".",
    };
    (!Path::new(dir).is_dir()).then(|| dir.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{POOL, files, problems};
    use super::*;

    #[test]
    fn include_patterns_that_match_nothing() {
        let text = format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/none/*.conf\n");
        let dir = files(&[("main.conf", &text)]);
        let found = problems(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("does not exist"), "{found:?}");

        let text = format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/*.none\n");
        let dir = files(&[("main.conf", &text)]);
        let config = load(&dir.path().join("main.conf")).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].message.contains("nothing matches"));
    }

    #[test]
    fn includes_nest_at_most_five_files_deep() {
        let mut list = vec![(
            "main.conf".to_string(),
            format!("[www]\nlisten = 9001\n{POOL}include = {{dir}}/1.conf\n"),
        )];
        for i in 1..=5 {
            list.push((
                format!("{i}.conf"),
                format!("include = {{dir}}/{}.conf\n", i + 1),
            ));
        }
        list.push(("6.conf".to_string(), String::new()));
        let list: Vec<(&str, &str)> = list.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let found = problems(files(&list).path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0.as_str(), found[0].1), ("4.conf", 1));
    }

    #[test]
    fn search_dir_of_a_pattern() {
        assert_eq!(
            unreadable_search_dir("/nonexistent-dir-for-test/*.conf").as_deref(),
            Some("/nonexistent-dir-for-test")
        );
        assert_eq!(unreadable_search_dir("/tmp/*.conf"), None);
        assert_eq!(
            unreadable_search_dir("/nonexistent-file-for-test.conf"),
            None
        );
    }
}
