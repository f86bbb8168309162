# keys.awk: a function's key is its symbol name without what changes from one build to the next:
# LLVM's numbered suffixes of local copies (.1934), the hash of a legacy Rust name (17h...E), and
# in a v0 Rust name the crates' disambiguators (Cs..._) and the back-references whose offsets
# they shift (B..._). Generic functions share a key (every Vec<T>::push), so the key goes with
# the code's size, which tells them apart until the function changes; a key whose size no
# function has any more stands for every function of that key.
#
#   awk -f keys.awk                  `nm -S` of some NAMES  -> "KEY SIZE", each once, in order
#   awk -f keys.awk -v keys=FILE     `nm -S --defined-only` -> the code's names, in FILE's order
#                                                             (an lld --symbol-ordering-file)

function key(name) {
    sub(/\.(llvm\.)?[0-9]+$/, "", name)
    gsub(/17h[0-9a-f]+E/, "E", name)
    if (name ~ /^_R/) {
        gsub(/Cs[0-9A-Za-z]*_/, "C", name)
        gsub(/B[0-9A-Za-z]*_/, "B_", name)
    }
    return name
}

BEGIN {
    if (keys != "") {
        while ((getline line < keys) > 0)
            if (line != "" && !(line in rank)) {
                rank[line] = ++ranks
                wanted[ranks] = line
            }
        close(keys)
    }
}

# nm -S: ADDRESS SIZE TYPE NAME, or ADDRESS TYPE NAME for a symbol without a size; code only.
NF < 3 || NF > 4 || $(NF - 1) !~ /^[tTwW]$/ { next }
{
    size = NF == 4 ? $2 : "0"
    sub(/^0+/, "", size)
    name = $NF
}

keys == "" {
    k = key(name) " " size
    if (!(k in seen)) {
        seen[k] = 1
        print k
    }
    next
}

{
    k = key(name)
    sized = k " " size
    if (sized in rank) {
        exact[rank[sized]] = exact[rank[sized]] name "\n"
    }
    any[k] = any[k] name "\n"
}

END {
    for (i = 1; i <= ranks; i++) {
        if (i in exact) {
            printf "%s", exact[i]
        } else {
            split(wanted[i], part, " ")
            if (!(part[1] in given)) {
                given[part[1]] = 1
                printf "%s", any[part[1]]
            }
        }
    }
}
