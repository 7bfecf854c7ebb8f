using System.Globalization;
using System.Text;

namespace ProxySelection.Interception.Rules;

/// <summary>
/// A classic BPF program for <c>-m bpf --bytecode</c> that matches a SYN whose option list the kernel fast path must
/// NOT decide: one with an MPTCP option (kind 30) other than MP_CAPABLE v1 — MP_PROXY (subtype 0xF), MP_JOIN, a v0
/// MP_CAPABLE — or with more options than it can walk. Such a SYN returns to the queue, where the negotiator reads it
/// (its verdict depends on the signal, the token or the version). TCP-MD5 and TCP-AO (kinds 19, 29) are left to
/// <c>--tcp-option</c> rules beside it.
/// <para>xt_bpf takes at most 64 instructions and classic BPF jumps only forward, so the walk is unrolled: 9
/// instructions per option, 6 options (a Linux MPTCP SYN has MSS, SACK-permitted, timestamps, NOP, window scale,
/// MP_CAPABLE: exactly 6). A NOP advances by its kind (1). The walk ends at an EOL (kind 0) or when a load runs past the
/// packet's end, which aborts the program with 0 — no match: every option was read and none disqualified the SYN. A
/// 7th option present means "not walked": match. IPv6 with an extension header before TCP: match.</para>
/// </summary>
public static class SynOptionFilter
{
    /// <summary>Options the program walks.</summary>
    public const int MaxOptions = 6;

    private const ushort LdAbsB = 0x30;   // A = P[k]
    private const ushort LdIndB = 0x50;   // A = P[X + k]
    private const ushort LdImm = 0x00;    // A = k
    private const ushort LdxMsh = 0xb1;   // X = 4 * (P[k] & 0xf)
    private const ushort LdxImm = 0x01;   // X = k
    private const ushort AddX = 0x0c;     // A += X
    private const ushort Tax = 0x07;      // X = A
    private const ushort JeqK = 0x15;     // A == k ? jt : jf
    private const ushort RetK = 0x06;

    /// <summary>The program as (code, jt, jf, k) instructions.</summary>
    public static IReadOnlyList<(ushort Code, byte Jt, byte Jf, uint K)> Program(bool v6)
    {
        var p = new List<(ushort, byte, byte, uint)>();
        int preamble = v6 ? 4 : 2;
        int final = preamble + (9 * MaxOptions);
        int notWalked = final + 3; // ret #1
        int walked = final + 4;    // ret #0
        byte To(int from, int target) => checked((byte)(target - from - 1));
        if (v6)
        {
            p.Add((LdAbsB, 0, 0, 6));                      // next header
            p.Add((JeqK, 0, To(1, notWalked), 6));         // TCP right after the fixed header, or not walked
            p.Add((LdxImm, 0, 0, 40));
        }
        else
        {
            p.Add((LdxMsh, 0, 0, 0));                      // X = IPv4 header length
        }

        p.Add((LdImm, 0, 0, 20));                          // A = the fixed TCP header: the first advance
        for (int i = 0; i < MaxOptions; i++)
        {
            int b = preamble + (9 * i);
            p.Add((AddX, 0, 0, 0));                        // b+0: X += A, the previous option's length
            p.Add((Tax, 0, 0, 0));                         // b+1
            p.Add((LdIndB, 0, 0, 0));                      // b+2: kind (past the end: abort, 0)
            p.Add((JeqK, To(b + 3, b + 9), 0, 1));         // b+3: NOP: A = 1 is its length
            p.Add((JeqK, To(b + 4, walked), 0, 0));        // b+4: EOL: the list ends
            p.Add((JeqK, 0, To(b + 5, b + 8), 30));        // b+5: not MPTCP: read its length
            p.Add((LdIndB, 0, 0, 2));                      // b+6: subtype << 4 | version
            p.Add((JeqK, 0, To(b + 7, notWalked), 0x01));  // b+7: MP_CAPABLE v1 only
            p.Add((LdIndB, 0, 0, 1));                      // b+8: length, the next advance
        }

        p.Add((AddX, 0, 0, 0));                            // final: is there a 7th option?
        p.Add((Tax, 0, 0, 0));
        p.Add((LdIndB, 0, 0, 0));                          // past the end: abort, 0
        p.Add((RetK, 0, 0, 1));                            // notWalked: match
        p.Add((RetK, 0, 0, 0));                            // walked: no match
        return p;
    }

    /// <summary>The program in iptables' <c>--bytecode</c> syntax: "count,code jt jf k,...".</summary>
    public static string Bytecode(bool v6)
    {
        var program = Program(v6);
        var sb = new StringBuilder(program.Count.ToString(CultureInfo.InvariantCulture));
        foreach (var (code, jt, jf, k) in program)
        {
            sb.Append(CultureInfo.InvariantCulture, $",{code} {jt} {jf} {k}");
        }

        return sb.ToString();
    }
}
