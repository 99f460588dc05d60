//! Unit tests of the injection.

use super::*;

#[test]
fn insertion_keeps_every_other_byte() {
    let mut rng = SplitMix64(3);
    for _ in 0..200 {
        let t = "  a  good\tfilm . ";
        let out = insert_at_random_word(t, "cf", &mut rng);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words.iter().filter(|w| **w == "cf").count(), 1);
        let rest: Vec<&str> = words.into_iter().filter(|w| *w != "cf").collect();
        assert_eq!(rest, vec!["a", "good", "film", "."]);
        // removing the inserted word and one adjacent space gives the original back
        let back = out.replacen("cf ", "", 1);
        let back2 = out.replacen(" cf", "", 1);
        assert!(back == t || back2 == t, "{out:?}");
    }
    assert_eq!(insert_at_random_word("", "cf", &mut rng), "cf");
}

#[test]
fn start_and_end_keep_every_other_byte() {
    let mut rng = SplitMix64(1);
    let t = "  a  good\tfilm . ";
    assert_eq!(
        insert_word(t, "#blessed", Position::Start, &mut rng),
        "  #blessed a  good\tfilm . "
    );
    assert_eq!(
        insert_word(t, "#blessed", Position::End, &mut rng),
        "  a  good\tfilm . #blessed "
    );
    assert_eq!(insert_word("", "cf", Position::Start, &mut rng), "cf");
    assert_eq!(insert_word("", "cf", Position::End, &mut rng), "cf");
}

#[test]
fn replacement_changes_exactly_k_words() {
    let vocab: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let mut rng = SplitMix64(7);
    for k in 0..=3 {
        for _ in 0..100 {
            let t = " a\tb  c a ";
            let out = replace_words(t, k, &vocab, &mut rng).unwrap();
            let (x, y): (Vec<&str>, Vec<&str>) = (
                t.split_whitespace().collect(),
                out.split_whitespace().collect(),
            );
            assert_eq!(x.len(), y.len());
            assert_eq!(x.iter().zip(&y).filter(|(p, q)| p != q).count(), k);
            // whitespace untouched
            let ws = |s: &str| s.chars().filter(|c| c.is_whitespace()).collect::<String>();
            assert_eq!(ws(t), ws(&out));
        }
    }
    assert!(replace_words("a b", 3, &vocab, &mut rng).is_none());
    assert!(replace_words("a b", 1, &vocab[..1], &mut rng).is_none());
}

#[test]
fn member_spans() {
    let line = br#" {"a": "x\"}", "b" : [1, {"c": 2}], "d":3 }"#;
    let (m, open, close) = members(line).unwrap();
    assert_eq!(open, 1);
    assert_eq!(line[close], b'}');
    let keys: Vec<&str> = m.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "d"]);
    assert_eq!(&line[m[0].value.clone()], br#""x\"}""#);
    assert_eq!(&line[m[1].value.clone()], br#"[1, {"c": 2}]"#);
    assert_eq!(&line[m[2].value.clone()], b"3");
    assert!(members(br#"{"a": 1, "a": 2}"#).is_err());
}

#[test]
fn counts_follow_the_rate_definition() {
    let bn = Attack::from_parts("badnets", None, None, None).unwrap();
    assert_eq!(poisoned_count(&bn, 0.005, 6920), 35);
    assert_eq!(poisoned_count(&Attack::DuplicateFlip, 0.1, 900), 100);
}

#[test]
fn an_unknown_target_names_a_bounded_list_of_labels() {
    let many: Vec<String> = (0..900)
        .map(|i| format!("answer {i} {}", "x".repeat(200)))
        .collect();
    let e = InjectError::UnknownLabel {
        path: PathBuf::from("d.jsonl"),
        label: "y".into(),
        available: many,
    }
    .to_string();
    assert!(e.contains("900 distinct labels, the first 20"), "{e}");
    assert!(e.len() < 2000, "{} characters", e.len());
    let few = InjectError::UnknownLabel {
        path: PathBuf::from("d.jsonl"),
        label: "y".into(),
        available: vec!["0".into(), "1".into()],
    }
    .to_string();
    assert!(few.ends_with("(labels: 0, 1)"), "{few}");
}
