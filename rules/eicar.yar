/*
  The EICAR anti-malware test file.

  https://www.eicar.org/download-anti-malware-testfile/ defines it as the
  68 printable ASCII characters below, at the very start of the file,
  optionally followed by whitespace (space, tab, LF, CR or CTRL-Z), the
  whole file being at most 128 bytes. Anything else (the string inside a
  larger file, lower case, other trailing bytes) is not the test file, so
  it is not reported: this keeps the rule usable as an end-to-end check
  without flagging documents that merely quote the string.

  In a YARA text string `\` must be escaped, hence `[4\\PZX54`.
*/

rule eicar_test_file : test
{
    meta:
        description = "EICAR anti-malware test file (harmless, for testing detection end to end)"
        author = "portcullis"
        severity = "test"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"

    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

    condition:
        $eicar at 0 and filesize <= 128 and
        // Bytes 68..127 are whitespace or past the end of the file. A
        // constant range keeps the loop short whatever the file size.
        for all i in (68..127) : (
            i >= filesize or
            uint8(i) == 0x20 or uint8(i) == 0x09 or uint8(i) == 0x0A or
            uint8(i) == 0x0D or uint8(i) == 0x1A
        )
}
