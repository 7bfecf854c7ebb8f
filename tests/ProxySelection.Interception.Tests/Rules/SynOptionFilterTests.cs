using ProxySelection.Interception.Rules;

namespace ProxySelection.Interception.Tests.Rules;

/// <summary>
/// The fast path's SYN classifier run by a classic BPF interpreter written from the kernel's semantics (a load past the
/// packet's end ends the program with 0) over IPv4 and IPv6 SYNs: a match sends the SYN back to the queue.
/// </summary>
[TestFixture]
public sealed class SynOptionFilterTests
{
    private static readonly byte[] Mss = [2, 4, 0x05, 0xb4];
    private static readonly byte[] SackTimestamps = [4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
    private static readonly byte[] NopWindowScale = [1, 3, 3, 7];
    private static readonly byte[] MpCapableV1 = [30, 4, 0x01, 0x01];

    [TestCase(false)]
    [TestCase(true)]
    public void LinuxMptcpSyn_SixOptionsAllRead_NoMatch(bool v6) =>
        Assert.That(Run(v6, [.. Mss, .. SackTimestamps, .. NopWindowScale, .. MpCapableV1]), Is.Zero);

    [TestCase(false)]
    [TestCase(true)]
    public void MpCapableThenEolAndPadding_NoMatch(bool v6) =>
        Assert.That(Run(v6, [.. MpCapableV1, 0, 0, 0, 0]), Is.Zero);

    [TestCase(false, new byte[] { 30, 16, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })] // MP_PROXY
    [TestCase(true, new byte[] { 30, 16, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [TestCase(false, new byte[] { 30, 12, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 2 })]             // MP_JOIN
    [TestCase(false, new byte[] { 30, 4, 0x00, 0x81 })]                                    // MP_CAPABLE v0
    public void MpCapableBesideAnotherMptcpOption_Match(bool v6, byte[] other) =>
        Assert.That(Run(v6, [.. Mss, .. MpCapableV1, .. other]), Is.EqualTo(1));

    [Test]
    public void SevenOptions_NotAllRead_Match() =>
        Assert.That(Run(false, [.. Mss, .. SackTimestamps, .. NopWindowScale, 1, 1, 1, 1, .. MpCapableV1]), Is.EqualTo(1));

    [Test]
    public void ZeroLengthOption_WalkStalls_Match() =>
        Assert.That(Run(false, [.. MpCapableV1, 8, 0, 0, 0]), Is.EqualTo(1));

    [Test]
    public void Ipv4HeaderWithOptions_WalkStartsAfterThem() =>
        Assert.That(Run(false, [.. Mss, .. MpCapableV1, 30, 4, 0xF0, 0], ipOptions: 8), Is.EqualTo(1));

    [Test]
    public void Ipv6ExtensionHeaderBeforeTcp_Match()
    {
        var packet = Packet(true, [.. MpCapableV1], 0);
        packet[6] = 0; // hop-by-hop
        Assert.That(Execute(SynOptionFilter.Program(true), packet), Is.EqualTo(1));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Program_FitsXtBpf(bool v6)
    {
        Assert.That(SynOptionFilter.Program(v6), Has.Count.LessThanOrEqualTo(64), "XT_BPF_MAX_NUM_INSTR");
        Assert.That(SynOptionFilter.Bytecode(v6), Does.StartWith($"{SynOptionFilter.Program(v6).Count},"));
    }

    private static uint Run(bool v6, byte[] options, int ipOptions = 0) =>
        Execute(SynOptionFilter.Program(v6), Packet(v6, options, ipOptions));

    private static byte[] Packet(bool v6, byte[] options, int ipOptions)
    {
        Assert.That(options.Length % 4, Is.Zero);
        int ip = v6 ? 40 : 20 + ipOptions;
        var packet = new byte[ip + 20 + options.Length];
        packet[0] = v6 ? (byte)0x60 : (byte)(0x40 | (ip / 4));
        if (v6)
        {
            packet[6] = 6;
        }
        else
        {
            packet[9] = 6;
        }

        packet[ip + 12] = (byte)((20 + options.Length) / 4 << 4);
        packet[ip + 13] = 0x02;
        options.CopyTo(packet, ip + 20);
        return packet;
    }

    /// <summary>Classic BPF as the kernel runs it for xt_bpf (the opcodes the program uses).</summary>
    private static uint Execute(IReadOnlyList<(ushort Code, byte Jt, byte Jf, uint K)> program, byte[] p)
    {
        uint a = 0, x = 0;
        for (int pc = 0; pc < program.Count; pc++)
        {
            var (code, jt, jf, k) = program[pc];
            switch (code)
            {
                case 0x30 when k < p.Length: a = p[k]; break;
                case 0x50 when x + k < p.Length: a = p[x + k]; break;
                case 0x30 or 0x50: return 0; // past the end
                case 0x00: a = k; break;
                case 0xb1: x = 4u * (p[k] & 0xfu); break;
                case 0x01: x = k; break;
                case 0x0c: a += x; break;
                case 0x07: x = a; break;
                case 0x15: pc += a == k ? jt : jf; break;
                case 0x06: return k;
                default: throw new InvalidOperationException($"opcode 0x{code:x}");
            }
        }

        throw new InvalidOperationException("fell off the end");
    }
}
