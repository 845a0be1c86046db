# Drives an interactive zsh through a pty (zsh/zpty), as a user at a terminal: $1 and $2 run
# before and after compinit, then each pair of arguments is a line typed with TAB at its end and
# the text the line must show after it. Prints OK, or what it waited for and what it saw.
setopt extendedglob
zmodload zsh/zpty
before=$1 after=$2; shift 2
zpty z "zsh -f -i"
out=""
esc=$'\e'
await() {
  local line deadline=$(( SECONDS + 20 ))
  while (( SECONDS < deadline )); do
    if zpty -r -t z line; then
      out+=$line
      # Without the terminal's escape sequences and bells: the text a user sees.
      shown=${${out//${esc}\[[0-9;?]#[a-zA-Z]/}//$'\a'/}
      [[ $shown == *$1* ]] && return 0
    else
      sleep 0.05
    fi
  done
  print -r -- "timed out waiting for: $1"
  print -r -- "${out//${esc}\[[0-9;?]#[a-zA-Z]/}" | cat -v | tail -c 300
  return 1
}
zpty -w z "PS1='%% '; $before; autoload -U compinit; compinit -u -D; $after; print REA''DY"
await READY || exit 1
while (( $# >= 2 )); do
  out=""
  zpty -w -n z "$1"$'\t'
  await "$2" || exit 1
  zpty -w -n z $'\C-u'
  shift 2
done
print OK
zpty -d z
