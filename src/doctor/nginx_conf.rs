//! Reading nginx's configuration into a tree of directives: nginx's own tokenizer rules
//! (words, `"..."` and `'...'` with backslash escapes, `#` comments, `;`, `{`, `}`) and
//! `include` with globs, relative to the directory of the main file (nginx's conf prefix).
//!
//! The text comes either from the files themselves or from `nginx -T`, which prints every
//! file it read after a `# configuration file PATH:` line; includes then resolve against
//! that dump. An include that matches nothing or cannot be read is a note, never a failure:
//! a diagnosis works with what it has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep includes may nest before the reader stops (nginx itself has no limit, but a
/// file including itself must not loop).
const MAX_INCLUDE_DEPTH: usize = 16;
/// The largest number of tokens one file may have before the reader stops (bounds memory on
/// hostile input).
const MAX_TOKENS: usize = 1 << 20;

/// The name of the placeholder left where an `include` of a file that could not be read
/// stood (its argument is the file): whatever that file set is unknown, not absent.
pub const UNREAD_INCLUDE: &str = "include (unread)";

/// One directive with its arguments and, for a block, its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The name (`location`, `fastcgi_pass`).
    pub name: String,
    /// The arguments, quotes removed.
    pub args: Vec<String>,
    /// The file it is in.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: usize,
    /// The children of a block directive; `None` for a simple one.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// `file:line`.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Where the text of config files comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The file system.
    Files,
    /// The files `nginx -T` printed, in its order.
    Dump(Vec<(PathBuf, String)>),
}

impl Source {
    /// Splits `nginx -T` output into its files.
    pub fn from_dump(text: &str) -> Source {
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        for line in text.split_inclusive('\n') {
            let bare = line.trim_end_matches(['\n', '\r']);
            if let Some(path) = bare
                .strip_prefix("# configuration file ")
                .and_then(|p| p.strip_suffix(':'))
            {
                files.push((PathBuf::from(path), String::new()));
            } else if let Some((_, body)) = files.last_mut() {
                body.push_str(line);
            }
        }
        // nginx separates files with one blank line.
        for (_, body) in &mut files {
            if body.ends_with("\n\n") {
                body.pop();
            }
        }
        Source::Dump(files)
    }

    fn read(&self, path: &Path) -> Result<String, String> {
        match self {
            Source::Files => std::fs::read(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| e.to_string()),
            Source::Dump(files) => files
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| "not in the output of nginx -T".to_string()),
        }
    }

    fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
        match self {
            Source::Files => {
                let mut v: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
                    .map(|paths| paths.flatten().collect())
                    .unwrap_or_default();
                v.sort();
                v
            }
            Source::Dump(files) => {
                let Ok(pat) = glob::Pattern::new(&pattern.to_string_lossy()) else {
                    return Vec::new();
                };
                files
                    .iter()
                    .filter(|(p, _)| pat.matches_path(p))
                    .map(|(p, _)| p.clone())
                    .collect()
            }
        }
    }
}

/// The configuration as read: the tree of the main file with includes spliced in, and what
/// could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConf {
    /// The main file.
    pub main: PathBuf,
    /// Top-level directives.
    pub directives: Vec<Directive>,
    /// Includes that matched nothing or could not be read, syntax problems; one line each.
    pub notes: Vec<String>,
}

/// Why the main file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfError {
    /// The file.
    pub path: PathBuf,
    /// The OS's or nginx's reason.
    pub reason: String,
}

/// Reads `main` and everything it includes.
pub fn read(main: &Path, source: &Source) -> Result<NginxConf, ConfError> {
    let text = source.read(main).map_err(|reason| ConfError {
        path: main.to_path_buf(),
        reason,
    })?;
    let prefix = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut r = Reader {
        source,
        prefix,
        notes: Vec::new(),
        eof_noted: false,
    };
    let directives = r.parse_file(main, &text, 0);
    Ok(NginxConf {
        main: main.to_path_buf(),
        directives,
        notes: r.notes,
    })
}

/// Parses config text alone (no includes resolved), for tests and fuzzing.
pub fn parse_text(file: &Path, text: &str) -> (Vec<Directive>, Vec<String>) {
    let source = Source::Dump(Vec::new());
    let mut r = Reader {
        source: &source,
        prefix: PathBuf::new(),
        notes: Vec::new(),
        eof_noted: false,
    };
    let tokens = tokenize(text, &mut r.notes, file);
    let mut i = 0;
    let d = r.build(file, &tokens, &mut i, MAX_INCLUDE_DEPTH, 0);
    (d, r.notes)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String, usize),
    Semi(usize),
    Open(usize),
    Close(usize),
}

fn tokenize(text: &str, notes: &mut Vec<String>, file: &Path) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut word = String::new();
    let mut word_line = 1usize;
    let mut in_word = false;
    let flush = |out: &mut Vec<Tok>, word: &mut String, in_word: &mut bool, l: usize| {
        if *in_word {
            out.push(Tok::Word(std::mem::take(word), l));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        if out.len() >= MAX_TOKENS {
            notes.push(format!(
                "{}: too many tokens; the rest is ignored",
                file.display()
            ));
            break;
        }
        match c {
            '\n' => {
                flush(&mut out, &mut word, &mut in_word, word_line);
                line += 1;
            }
            c if c.is_whitespace() => flush(&mut out, &mut word, &mut in_word, word_line),
            '#' if !in_word => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            ';' => {
                flush(&mut out, &mut word, &mut in_word, word_line);
                out.push(Tok::Semi(line));
            }
            '{' if !(in_word && word.ends_with('$')) => {
                flush(&mut out, &mut word, &mut in_word, word_line);
                out.push(Tok::Open(line));
            }
            '}' if !(in_word && word.contains("${") && !word.ends_with('}')) => {
                flush(&mut out, &mut word, &mut in_word, word_line);
                out.push(Tok::Close(line));
            }
            '"' | '\'' if !in_word => {
                let quote = c;
                word_line = line;
                loop {
                    match chars.next() {
                        None => {
                            notes.push(format!(
                                "{}:{word_line}: unterminated quote",
                                file.display()
                            ));
                            break;
                        }
                        Some('\\') => match chars.next() {
                            Some(n) if n == quote || n == '\\' => word.push(n),
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(n) => {
                                if n == '\n' {
                                    line += 1;
                                }
                                word.push('\\');
                                word.push(n);
                            }
                            None => break,
                        },
                        Some(q) if q == quote => break,
                        Some(n) => {
                            if n == '\n' {
                                line += 1;
                            }
                            word.push(n);
                        }
                    }
                }
                // A quoted word ends at its closing quote.
                out.push(Tok::Word(std::mem::take(&mut word), word_line));
                in_word = false;
            }
            '\\' => {
                if !in_word {
                    word_line = line;
                    in_word = true;
                }
                if let Some(n) = chars.next() {
                    if n == '\n' {
                        line += 1;
                    }
                    word.push('\\');
                    word.push(n);
                }
            }
            c => {
                if !in_word {
                    word_line = line;
                    in_word = true;
                }
                word.push(c);
            }
        }
    }
    flush(&mut out, &mut word, &mut in_word, word_line);
    out
}

struct Reader<'s> {
    source: &'s Source,
    prefix: PathBuf,
    notes: Vec<String>,
    /// The unexpected end of a file was noted (once, not at every open block).
    eof_noted: bool,
}

impl Reader<'_> {
    fn parse_file(&mut self, file: &Path, text: &str, depth: usize) -> Vec<Directive> {
        let tokens = tokenize(text, &mut self.notes, file);
        let mut i = 0;
        self.eof_noted = false;
        let out = self.build(file, &tokens, &mut i, depth, 0);
        if i < tokens.len() {
            self.notes.push(format!(
                "{}: unexpected '}}'; the rest is ignored",
                file.display()
            ));
        }
        out
    }

    /// Builds directives from `tokens[*i..]` until a closing brace or the end.
    fn build(
        &mut self,
        file: &Path,
        tokens: &[Tok],
        i: &mut usize,
        depth: usize,
        nesting: usize,
    ) -> Vec<Directive> {
        let mut out = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut first_line = 0usize;
        while *i < tokens.len() {
            let t = &tokens[*i];
            *i += 1;
            match t {
                Tok::Word(w, l) => {
                    if words.is_empty() {
                        first_line = *l;
                    }
                    words.push(w.clone());
                }
                Tok::Semi(l) => {
                    if words.is_empty() {
                        continue;
                    }
                    let name = words.remove(0);
                    let args = std::mem::take(&mut words);
                    if name == "include" && depth < MAX_INCLUDE_DEPTH {
                        out.extend(self.include(file, first_line, &args, depth));
                    } else {
                        let _ = l;
                        out.push(Directive {
                            name,
                            args,
                            file: file.to_path_buf(),
                            line: first_line,
                            block: None,
                        });
                    }
                }
                Tok::Open(l) => {
                    if nesting >= 64 {
                        self.notes
                            .push(format!("{}:{l}: blocks nested too deep", file.display()));
                        *i = tokens.len();
                        break;
                    }
                    let line = if words.is_empty() { *l } else { first_line };
                    let name = if words.is_empty() {
                        String::new()
                    } else {
                        words.remove(0)
                    };
                    let args = std::mem::take(&mut words);
                    let children = self.build(file, tokens, i, depth, nesting + 1);
                    out.push(Directive {
                        name,
                        args,
                        file: file.to_path_buf(),
                        line,
                        block: Some(children),
                    });
                }
                Tok::Close(l) => {
                    if nesting == 0 {
                        self.notes
                            .push(format!("{}:{l}: unexpected '}}'", file.display()));
                        continue;
                    }
                    return out;
                }
            }
        }
        if nesting > 0 && !std::mem::replace(&mut self.eof_noted, true) {
            self.notes.push(format!(
                "{}: unexpected end of file, expecting '}}'",
                file.display()
            ));
        }
        out
    }

    fn include(
        &mut self,
        file: &Path,
        line: usize,
        args: &[String],
        depth: usize,
    ) -> Vec<Directive> {
        let Some(pattern) = args.first() else {
            return Vec::new();
        };
        let path = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.prefix.join(pattern)
        };
        let has_glob = pattern.contains(['*', '?', '[']);
        let files = if has_glob {
            self.source.glob(&path)
        } else {
            vec![path.clone()]
        };
        if files.is_empty() {
            // nginx accepts a glob that matches nothing; say so, as it may explain a gap.
            self.notes.push(format!(
                "{}:{line}: include {} matches no file",
                file.display(),
                path.display()
            ));
            return Vec::new();
        }
        let mut out = Vec::new();
        for f in files {
            match self.source.read(&f) {
                Ok(text) => out.extend(self.parse_file(&f, &text, depth + 1)),
                Err(reason) => {
                    self.notes.push(format!(
                        "{}:{line}: include {} could not be read: {reason}",
                        file.display(),
                        f.display()
                    ));
                    // Kept in the tree, so that a setting it may hold is known to be unknown.
                    out.push(Directive {
                        name: UNREAD_INCLUDE.to_string(),
                        args: vec![f.display().to_string()],
                        file: file.to_path_buf(),
                        line,
                        block: None,
                    });
                }
            }
        }
        out
    }
}

/// Every directive of the tree in order, with the chain of enclosing blocks.
pub fn walk<'a>(directives: &'a [Directive], mut f: impl FnMut(&[&'a Directive], &'a Directive)) {
    fn go<'a>(
        ds: &'a [Directive],
        stack: &mut Vec<&'a Directive>,
        f: &mut dyn FnMut(&[&'a Directive], &'a Directive),
    ) {
        for d in ds {
            f(stack, d);
            if let Some(children) = &d.block {
                stack.push(d);
                go(children, stack, f);
                stack.pop();
            }
        }
    }
    go(directives, &mut Vec::new(), &mut f);
}

/// Files named in a `nginx -T` dump, for notes.
pub fn dump_files(source: &Source) -> BTreeMap<PathBuf, usize> {
    match source {
        Source::Files => BTreeMap::new(),
        Source::Dump(files) => files
            .iter()
            .map(|(p, t)| (p.clone(), t.lines().count()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ds: &[Directive]) -> Vec<String> {
        ds.iter().map(|d| d.name.clone()).collect()
    }

    #[test]
    fn blocks_comments_and_quotes() {
        let text = "user www-data; # who runs workers\nhttp {\n  server {\n    location ~ \"\\.php$\" {\n      fastcgi_param SCRIPT_FILENAME '$document_root$fastcgi_script_name';\n      return 200 \"a;b{c}#d\";\n    }\n  }\n}\n";
        let (ds, notes) = parse_text(Path::new("/n.conf"), text);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(names(&ds), ["user", "http"]);
        assert_eq!(ds[0].args, ["www-data"]);
        let server = &ds[1].block.as_ref().unwrap()[0];
        let loc = &server.block.as_ref().unwrap()[0];
        assert_eq!(loc.args, ["~", "\\.php$"]);
        assert_eq!(loc.line, 4);
        let inner = loc.block.as_ref().unwrap();
        assert_eq!(
            inner[0].args,
            ["SCRIPT_FILENAME", "$document_root$fastcgi_script_name"]
        );
        assert_eq!(inner[1].args, ["200", "a;b{c}#d"]);
        assert_eq!(inner[1].line, 6);
    }

    #[test]
    fn variables_with_braces_stay_one_word() {
        let (ds, _) = parse_text(
            Path::new("/n.conf"),
            "fastcgi_pass ${backend}_x;\nset $a b;",
        );
        assert_eq!(ds[0].args, ["${backend}_x"]);
        assert_eq!(ds[1].args, ["$a", "b"]);
    }

    #[test]
    fn unbalanced_input_is_a_note() {
        let (_, notes) = parse_text(Path::new("/n.conf"), "http { server {");
        assert_eq!(notes.len(), 1, "{notes:?}");
        let (_, notes) = parse_text(Path::new("/n.conf"), "a \"b");
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn includes_with_globs_relative_to_the_main_files_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sites")).unwrap();
        std::fs::write(
            d.join("nginx.conf"),
            "user nginx;\nhttp {\n  include sites/*.conf;\n  include missing/*.conf;\n  include absent.conf;\n}\n",
        )
        .unwrap();
        std::fs::write(d.join("sites/b.conf"), "server { listen 81; }\n").unwrap();
        std::fs::write(d.join("sites/a.conf"), "server { listen 80; }\n").unwrap();
        let conf = read(&d.join("nginx.conf"), &Source::Files).unwrap();
        let http = conf.directives[1].block.as_ref().unwrap();
        assert_eq!(names(http), ["server", "server", UNREAD_INCLUDE]);
        assert_eq!(http[0].file, d.join("sites/a.conf"));
        assert_eq!(http[1].block.as_ref().unwrap()[0].args, ["81"]);
        assert_eq!(conf.notes.len(), 2, "{:?}", conf.notes);
        assert!(conf.notes[0].contains("matches no file"));
        assert!(conf.notes[1].contains("could not be read"));
        let unread = &http[2];
        assert_eq!(unread.name, UNREAD_INCLUDE);
        assert_eq!(unread.args, [d.join("absent.conf").display().to_string()]);
        assert_eq!(unread.at(), format!("{}:5", d.join("nginx.conf").display()));
    }

    #[test]
    fn an_include_of_itself_stops() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("loop.conf");
        std::fs::write(&f, "include loop.conf;\nuser x;\n").unwrap();
        let conf = read(&f, &Source::Files).unwrap();
        let mut users = 0;
        walk(&conf.directives, |_, d| {
            users += usize::from(d.name == "user")
        });
        assert_eq!(users, MAX_INCLUDE_DEPTH + 1);
    }

    #[test]
    fn reads_an_nginx_t_dump() {
        let dump = "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n# configuration file /etc/nginx/nginx.conf:\nuser www-data;\nhttp { include /etc/nginx/conf.d/*.conf; }\n\n# configuration file /etc/nginx/conf.d/php.conf:\nserver { location / { fastcgi_pass unix:/run/php/php8.2-fpm.sock; } }\n\n";
        let source = Source::from_dump(dump);
        let conf = read(Path::new("/etc/nginx/nginx.conf"), &source).unwrap();
        assert!(conf.notes.is_empty(), "{:?}", conf.notes);
        let mut pass = None;
        walk(&conf.directives, |_, d| {
            if d.name == "fastcgi_pass" {
                pass = Some((d.args[0].clone(), d.at()));
            }
        });
        assert_eq!(
            pass,
            Some((
                "unix:/run/php/php8.2-fpm.sock".to_string(),
                "/etc/nginx/conf.d/php.conf:1".to_string()
            ))
        );
        assert_eq!(dump_files(&source).len(), 2);
    }

    #[test]
    fn a_missing_main_file_is_an_error() {
        let e = read(Path::new("/nonexistent/nginx.conf"), &Source::Files).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/nginx.conf: "));
    }
}
