using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using ProxySelection.Interception.Bpf;
using ProxySelection.Tests;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Interception;

/// <summary>
/// The kernel join programs alone, by BPF_PROG_TEST_RUN (root, no namespace): the egress program learns the token of the
/// listener's MP_CAPABLE SYN/ACK (SHA-256 of the key, RFC 8684 §3.2) and nothing else, the raw table's match takes
/// an MP_JOIN SYN for a learnt token and nothing else, and the foreign match passes an MP_JOIN SYN for any other token
/// only while the map is whole.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelJoinProgramTests
{
    private const uint SlotMask = KernelSigner.DefaultSlotMask;
    private const uint ListenerMark = 0x700;
    private const int SkBuffSize = 192, SkBuffMark = 8; // struct __sk_buff

    // What Linux writes before MPTCP's option on a SYN or SYN/ACK: MSS, SACK-permitted and timestamps, NOP, window scale.
    private static readonly byte[] Leading = [2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];

    private SafeFileHandle _tokens = null!;
    private SafeFileHandle _counters = null!;
    private SafeFileHandle _scratch = null!;
    private SafeFileHandle _state = null!;
    private SafeFileHandle _match = null!;
    private SafeFileHandle _foreign = null!;
    private SafeFileHandle _egress = null!;

    [SetUp]
    public void SetUp()
    {
        CreateMaps(tokenCapacity: 64);
    }

    private void CreateMaps(int tokenCapacity)
    {
        _tokens = Map(BpfNative.MapTypeHash, 4, 8, tokenCapacity, "psel_t_tok");
        _counters = Map(BpfNative.MapTypePercpuArray, 4, 8, 9, "psel_t_cnt");
        _scratch = Map(BpfNative.MapTypePercpuArray, 4, Sha256Layout.Size, 1, "psel_t_tmp");
        _state = Map(BpfNative.MapTypeArray, 4, 8, JoinMapState.Slots, "psel_t_st");
        _match = Load(BpfNative.ProgTypeSocketFilter, JoinMatchProgram.Emit(Fd(_tokens), Fd(_counters)), "psel_t_join");
        _foreign = Load(BpfNative.ProgTypeSocketFilter, JoinMatchProgram.EmitForeign(Fd(_tokens), Fd(_state), Fd(_counters)), "psel_t_pass");
        _egress = Load(BpfNative.ProgTypeSchedCls, EgressRelabelProgram.Emit(Fd(_counters), 14, SlotMask,
            new TokenLearningMaps(Fd(_tokens), Fd(_scratch), Fd(_state), ListenerMark)), "psel_t_egress");
    }

    [TearDown]
    public void TearDown()
    {
        _egress?.Dispose();
        _foreign?.Dispose();
        _match?.Dispose();
        _state?.Dispose();
        _scratch?.Dispose();
        _counters?.Dispose();
        _tokens?.Dispose();
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ListenerSynAck_TokenIsSha256OfItsKey_JoinForItMatchesAndIsCounted(bool v6)
    {
        byte[] key = Convert.FromHexString("0123456789ABCDEF");
        Assert.That(RunEgress(SynAck(v6, Capable(key)), ListenerMark), Is.True);
        byte[] token = SHA256.HashData(key).AsSpan(0, 4).ToArray();

        Assert.That(InMap(token), Is.True, "the token, SHA-256(key)'s first 4 bytes, is in the map");
        Assert.That(Count(SignerCounter.TokensLearnt), Is.EqualTo(1));
        Assert.That(Match(Syn(v6, Join(token))), Is.True);
        Assert.That(Count(SignerCounter.JoinsTaken), Is.EqualTo(1));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void JoinForAnUnknownToken_DoesNotMatch_NothingCounted(bool v6)
    {
        Learn([0xA1, 0xA2, 0xA3, 0xA4]);
        Assert.That(Match(Syn(v6, Join([0xA1, 0xA2, 0xA3, 0xA5]))), Is.False);
        Assert.That(Count(SignerCounter.JoinsTaken), Is.Zero);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void MpCapableSyn_OrMalformedJoins_WithAKnownTokenInPlace_NeverMatch(bool v6)
    {
        byte[] token = [0xB1, 0xB2, 0xB3, 0xB4];
        Learn(token);
        Assert.Multiple(() =>
        {
            // MP_CAPABLE (subtype 0) with the token's bytes where MP_JOIN has them.
            Assert.That(Match(Syn(v6, [30, 12, 0x01, 0x81, .. token, 1, 2, 3, 4])), Is.False, "MP_CAPABLE, 12 bytes");
            Assert.That(Match(Syn(v6, [30, 4, 0x01, 0x81])), Is.False, "MP_CAPABLE v1 SYN");
            // MP_JOIN with a short length: the token is not where the length says the option ends.
            Assert.That(Match(Syn(v6, [30, 8, 0x10, 0x00, .. token, 1, 1, 1, 1])), Is.False, "MP_JOIN, length 8");
            Assert.That(Match(Syn(v6, [30, 11, 0x10, 0x00, .. token, 1, 2, 3, 0])), Is.False, "MP_JOIN, length 11");
            Assert.That(Match(Syn(v6, [30, 12, 0x20, 0x00, .. token, 1, 2, 3, 4])), Is.False, "subtype 2 (DSS)");
            Assert.That(Match(Syn(v6, [30, 1, 0x10, 0x00, .. token, 1, 2, 3, 4])), Is.False, "length 1");
            Assert.That(Match(Syn(v6, [0, 1, 1, 1, 30, 12, 0x10, 0x00, .. token, 1, 2, 3, 4])), Is.False, "after an end-of-list");
            Assert.That(Match(Packet(v6, TcpFlags.Syn | TcpFlags.Ack, Join(token))), Is.False, "a SYN/ACK");
            Assert.That(Count(SignerCounter.JoinsTaken), Is.Zero);
        });

        Assert.That(Match(Syn(v6, Join(token))), Is.True, "the same token in a well-formed join (the control)");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ForwardedSynAck_UpstreamSyn_AndPlainSynAck_LearnNothing(bool v6)
    {
        byte[] key = Convert.FromHexString("FEDCBA9876543210");
        byte[] token = SHA256.HashData(key).AsSpan(0, 4).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(RunEgress(SynAck(v6, Capable(key)), mark: 0), Is.True, "a forwarded server's SYN/ACK (no mark)");
            Assert.That(RunEgress(SynAck(v6, Capable(key)), mark: 0x100), Is.True, "another slot's mark");
            Assert.That(RunEgress(Syn(v6, Capable(key)), ListenerMark), Is.True, "a SYN, not a SYN/ACK");
            Assert.That(RunEgress(SynAck(v6, [1, 1, 1, 1]), ListenerMark), Is.True, "no MPTCP option");
            Assert.That(RunEgress(SynAck(v6, [30, 12, 0x11, 0x00, .. key]), ListenerMark), Is.True, "subtype 1 with 8 bytes after");
        });

        Assert.That(InMap(token), Is.False);
        Assert.That(Count(SignerCounter.TokensLearnt), Is.Zero);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ForeignJoin_TokenNotInTheWholeMap_PassesAndIsCounted_OwnTokenDoesNot(bool v6)
    {
        byte[] own = [0xC1, 0xC2, 0xC3, 0xC4];
        Learn(own);
        Assert.That(Foreign(Syn(v6, Join([0xC1, 0xC2, 0xC3, 0xC5]))), Is.True, "another connection's token");
        Assert.That(Count(SignerCounter.JoinsPassed), Is.EqualTo(1));
        Assert.That(Foreign(Syn(v6, Join(own))), Is.False, "this proxy's token");
        Assert.That(Match(Syn(v6, Join(own))), Is.True, "which the other match takes");
        Assert.That(Count(SignerCounter.JoinsPassed), Is.EqualTo(1));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ForeignJoin_MalformedOrNotAJoin_NeverPasses(bool v6)
    {
        byte[] token = [0xD1, 0xD2, 0xD3, 0xD4];
        Assert.Multiple(() =>
        {
            Assert.That(Foreign(Syn(v6, [30, 12, 0x01, 0x81, .. token, 1, 2, 3, 4])), Is.False, "MP_CAPABLE, 12 bytes");
            Assert.That(Foreign(Syn(v6, [30, 4, 0x01, 0x81])), Is.False, "MP_CAPABLE v1 SYN");
            Assert.That(Foreign(Syn(v6, [30, 8, 0x10, 0x00, .. token, 1, 1, 1, 1])), Is.False, "MP_JOIN, length 8");
            Assert.That(Foreign(Syn(v6, [30, 12, 0x20, 0x00, .. token, 1, 2, 3, 4])), Is.False, "subtype 2 (DSS)");
            Assert.That(Foreign(Syn(v6, [0, 1, 1, 1, 30, 12, 0x10, 0x00, .. token, 1, 2, 3, 4])), Is.False, "after an end-of-list");
            Assert.That(Foreign(Syn(v6, [1, 1, 1, 1])), Is.False, "no MPTCP option");
            Assert.That(Foreign(Packet(v6, TcpFlags.Syn | TcpFlags.Ack, Join(token))), Is.False, "a SYN/ACK");
            Assert.That(Count(SignerCounter.JoinsPassed), Is.Zero);
        });

        Assert.That(Foreign(Syn(v6, Join(token))), Is.True, "the same token in a well-formed join (the control)");
    }

    [Test]
    public void ForeignJoin_WhileTheDaemonHasNotVouchedForTheMap_IsLeftToTheQueue()
    {
        byte[] join = Syn(false, Join([0xE1, 0xE2, 0xE3, 0xE4]));
        SetState(JoinMapState.Acknowledged, JoinMapState.Blocked);
        Assert.That(Foreign(join), Is.False, "blocked (an interface without the program, or before the daemon opens it)");
        SetState(JoinMapState.Acknowledged, 0);
        Assert.That(Foreign(join), Is.True, "opened");
        SetState(JoinMapState.Failures, 1);
        Assert.That(Foreign(join), Is.False, "a learning failure not yet acknowledged");
        SetState(JoinMapState.Acknowledged, 1);
        Assert.That(Foreign(join), Is.True, "acknowledged");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void TokenMapFull_LearningFailureIsCountedAndStamped_AndForeignJoinsGoToTheQueue(bool v6)
    {
        TearDown();
        CreateMaps(tokenCapacity: 1);
        SetState(JoinMapState.Acknowledged, 0);
        byte[] first = Convert.FromHexString("1111111111111111"), second = Convert.FromHexString("2222222222222222");
        byte[] secondToken = SHA256.HashData(second).AsSpan(0, 4).ToArray();
        long before = KernelJoinClock.Nanoseconds();

        Assert.That(RunEgress(SynAck(v6, Capable(first)), ListenerMark), Is.True);
        Assert.That(RunEgress(SynAck(v6, Capable(second)), ListenerMark), Is.True, "the SYN/ACK leaves all the same");

        Assert.That(Count(SignerCounter.TokensLearnt), Is.EqualTo(1));
        Assert.That(InMap(secondToken), Is.False);
        Assert.That(ReadState(JoinMapState.Failures), Is.EqualTo(1));
        Assert.That((long)ReadState(JoinMapState.LastFailure), Is.GreaterThanOrEqualTo(before), "stamped on the clock the daemon reads");
        Assert.That(Foreign(Syn(v6, Join(secondToken))), Is.False, "its join could be this proxy's: the queue decides");
    }

    [Test]
    public void TokenStamp_IsTheLearningTime_OnTheDaemonsClock()
    {
        byte[] key = Convert.FromHexString("3333333333333333");
        long before = KernelJoinClock.Nanoseconds();
        Assert.That(RunEgress(SynAck(false, Capable(key)), ListenerMark), Is.True);
        long after = KernelJoinClock.Nanoseconds();
        var value = new byte[8];
        Assert.That(BpfNative.LookupElement(_tokens, SHA256.HashData(key).AsSpan(0, 4).ToArray(), value), Is.Zero);
        long stamp = BinaryPrimitives.ReadInt64LittleEndian(value);
        Assert.That(stamp, Is.InRange(before, after), "the sweep ages tokens by this stamp");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void RstGate_MatchesOnlyWhileOpen(bool v6)
    {
        using var gate = Map(BpfNative.MapTypeArray, 4, 8, 1, "psel_t_gate");
        using var program = Load(BpfNative.ProgTypeSocketFilter, RstGateProgram.Emit(Fd(gate)), "psel_t_gate");
        byte[] rst = Packet(v6, TcpFlags.Rst, [1, 1, 1, 1]);
        bool Run()
        {
            Assert.That(BpfNative.TestRun(program, rst, out uint matched), Is.Zero);
            return matched != 0;
        }

        Assert.That(Run(), Is.False, "closed (nothing held): the RST skips the queue");
        Assert.That(BpfNative.UpdateElement(gate, new byte[4], BitConverter.GetBytes(1UL)), Is.Zero);
        Assert.That(Run(), Is.True, "open (a SYN is held): the RST is queued");
        Assert.That(BpfNative.UpdateElement(gate, new byte[4], BitConverter.GetBytes(0UL)), Is.Zero);
        Assert.That(Run(), Is.False, "closed again");
    }

    private static byte[] Capable(byte[] key) => [30, 12, 0x01, 0x01, .. key];

    private static byte[] Join(byte[] token) => [30, 12, 0x10, 0x00, .. token, 0x11, 0x22, 0x33, 0x44];

    private static byte[] Syn(bool v6, byte[] mptcp) => Packet(v6, TcpFlags.Syn, mptcp);

    private static byte[] SynAck(bool v6, byte[] mptcp) => Packet(v6, TcpFlags.Syn | TcpFlags.Ack, mptcp);

    /// <summary>An Ethernet frame: the header test-run strips for a socket filter and keeps for a tc program.</summary>
    private static byte[] Packet(bool v6, TcpFlags flags, byte[] mptcp)
    {
        byte[] options = [.. Leading, .. mptcp];
        byte[] ip = PacketBuilder.Build(v6, 40001, flags, options);
        var frame = new byte[14 + ip.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), v6 ? (ushort)0x86DD : (ushort)0x0800);
        ip.CopyTo(frame, 14);
        return frame;
    }

    private void Learn(byte[] token) => Assert.That(BpfNative.UpdateElement(_tokens, token, new byte[8]), Is.Zero);

    private bool InMap(byte[] token) => BpfNative.LookupElement(_tokens, token, new byte[8]) == 0;

    private void SetState(int slot, ulong value)
    {
        var key = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(key, slot);
        Assert.That(BpfNative.UpdateElement(_state, key, BitConverter.GetBytes(value)), Is.Zero);
    }

    private ulong ReadState(int slot)
    {
        var key = new byte[4];
        var value = new byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(key, slot);
        Assert.That(BpfNative.LookupElement(_state, key, value), Is.Zero);
        return BinaryPrimitives.ReadUInt64LittleEndian(value);
    }

    private bool Foreign(byte[] frame)
    {
        Assert.That(BpfNative.TestRun(_foreign, frame, out uint matched), Is.Zero);
        return matched != 0;
    }

    private bool Match(byte[] frame)
    {
        Assert.That(BpfNative.TestRun(_match, frame, out uint matched), Is.Zero);
        return matched != 0;
    }

    /// <summary>Runs the egress program with <paramref name="mark"/> as skb->mark; true when it let the packet go on (TCX_NEXT).</summary>
    private bool RunEgress(byte[] frame, uint mark)
    {
        var context = new byte[SkBuffSize];
        BinaryPrimitives.WriteUInt32LittleEndian(context.AsSpan(SkBuffMark), mark);
        Assert.That(BpfNative.TestRun(_egress, frame, context, out uint verdict), Is.Zero);
        return verdict == uint.MaxValue;
    }

    private long Count(SignerCounter counter)
    {
        var value = new byte[8 * 1024]; // one u64 per possible CPU, however many
        var key = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(key, (int)counter);
        Assert.That(BpfNative.LookupElement(_counters, key, value), Is.Zero);
        long sum = 0;
        for (int c = 0; c < value.Length / 8; c++)
        {
            sum += BinaryPrimitives.ReadInt64LittleEndian(value.AsSpan(c * 8));
        }

        return sum;
    }

    private static int Fd(SafeFileHandle handle) => (int)handle.DangerousGetHandle();

    private static SafeFileHandle Map(int type, int keySize, int valueSize, int entries, string name)
    {
        var map = BpfNative.CreateMap(type, keySize, valueSize, entries, 0, name, out int errno);
        Assert.That(map.IsInvalid, Is.False, BpfNative.Errno(errno));
        return map;
    }

    private static SafeFileHandle Load(int type, byte[] code, string name)
    {
        var program = BpfNative.LoadProgram(type, code, 0, name, out int errno, out string log);
        Assert.That(program.IsInvalid, Is.False, $"{BpfNative.Errno(errno)}\n{log[^Math.Min(log.Length, 3000)..]}");
        return program;
    }
}
