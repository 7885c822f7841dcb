//! The layout rules of ARCHITECTURE.md that a machine can check, run as xtask's unit tests
//! (`cargo test -p xtask`, part of `cargo xtask test`): no import cycle among the top-level
//! modules of `tracer/src`, and no hand-written Rust file over 600 lines.
#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, BTreeSet},
        fs,
        path::{Path, PathBuf},
    };

    use crate::cmd::workspace_root;

    /// Every `.rs` file below `dir`, skipping build output.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != ".git" {
                    rust_files(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The top-level module a file of `tracer/src` belongs to (`minimize/compare.rs` ->
    /// `minimize`); `None` for the crate roots.
    fn top_module(src: &Path, file: &Path) -> Option<String> {
        let rel = file.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        (name != "lib" && name != "main").then(|| name.to_owned())
    }

    /// The top-level modules `text` names through `crate::`, in paths and in `use crate::{..}`
    /// groups. Test modules are left out: a test may use what it likes.
    fn crate_refs(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        let mut refs = BTreeSet::new();
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // The first name of each item at depth 0 of the group.
                let mut depth = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            refs.insert(ident(&group[j..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                refs.insert(ident(rest));
            }
        }
        refs.retain(|m| modules.contains(m));
        refs
    }

    /// The modules that lie on a cycle of `graph`, if any (a module that reaches itself).
    fn on_a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
        let reaches = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = graph[from].iter().collect();
            while let Some(m) = todo.pop() {
                if seen.insert(m.clone()) {
                    todo.extend(graph.get(m).into_iter().flatten());
                }
            }
            seen
        };
        graph
            .keys()
            .filter(|m| reaches(m).contains(*m))
            .cloned()
            .collect()
    }

    #[test]
    fn tracer_modules_have_no_import_cycle() {
        let src = workspace_root().join("tracer/src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
        assert!(modules.contains("minimize") && modules.contains("container"));
        let mut graph: BTreeMap<String, BTreeSet<String>> = modules
            .iter()
            .map(|m| (m.clone(), BTreeSet::new()))
            .collect();
        for file in &files {
            let Some(top) = top_module(&src, file) else {
                continue;
            };
            let text = fs::read_to_string(file).unwrap();
            let mut refs = crate_refs(&text, &modules);
            refs.remove(&top);
            graph.get_mut(&top).unwrap().extend(refs);
        }
        let cyclic = on_a_cycle(&graph);
        let edges: Vec<String> = cyclic
            .iter()
            .map(|m| format!("{m} -> {:?}", graph[m]))
            .collect();
        assert!(
            cyclic.is_empty(),
            "import cycle among tracer/src modules:\n{}",
            edges.join("\n")
        );
    }

    #[test]
    fn the_reference_scan_sees_paths_and_groups() {
        let modules: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        let text = "use crate::{a::X, b::{self, Y},\n    c};\nfn f() { crate::d::g(); crate::zz::h(); }\n#[cfg(test)]\nmod t { use crate::e; }";
        let refs = crate_refs(text, &modules);
        assert_eq!(refs, ["a", "b", "c", "d"].map(String::from).into());
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec!["a"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(on_a_cycle(&graph), ["a", "b", "c"].map(String::from));
    }

    #[test]
    fn no_hand_written_rust_file_is_over_600_lines() {
        let root = workspace_root();
        let mut files = Vec::new();
        for dir in ["tracer", "tracer-common", "tracer-ebpf", "xtask", "fuzz"] {
            rust_files(&root.join(dir), &mut files);
        }
        let long: Vec<String> = files
            .iter()
            .filter_map(|f| {
                let lines = fs::read_to_string(f).ok()?.lines().count();
                (lines > 600).then(|| format!("{} ({lines} lines)", f.display()))
            })
            .collect();
        assert!(long.is_empty(), "split these along their seams: {long:?}");
    }
}
