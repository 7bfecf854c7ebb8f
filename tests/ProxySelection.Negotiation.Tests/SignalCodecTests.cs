using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Negotiation.Tests;

/// <summary>Spoofed or damaged MP_PROXY is never a signal (design §2 property 5, spec §5.6 and §9).</summary>
public class SignalCodecTests
{
    private static readonly byte[] Client = [198, 18, 0, 1];
    private static readonly byte[] Server = [198, 18, 1, 1];
    private static readonly MpProxyKeyRing Domain = new(1, Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
    private static readonly MpProxyKeyRing Other = new(1, Enumerable.Range(101, 32).Select(i => (byte)i).ToArray());
    private static readonly MpProxyFlow Syn = MpProxyFlow.ForSyn(Client, Server, 40000, 443, 0x1234_5678);
    private static readonly MpProxyFlow SynAck = Syn.WithSynAck(0x9ABC_DEF0);
    private static readonly ProxySignal Defer = new(SignalKind.Defer, 7, 12);
    private static readonly ProxySignal Probe = new(SignalKind.Probe, 7, 12, AtCapacity: true);

    private static byte[] Write(ProxySignal signal, MpProxyKeyRing ring, MpProxyFlow flow)
    {
        var buffer = new byte[16];
        int n = SignalCodec.Write(buffer, signal, ring, flow);
        return buffer[..n];
    }

    private static (ProxySignal? Signal, SignalCheck Check) Read(byte[] options, MpProxyFlow flow)
    {
        var signal = SignalCodec.Read(options, flow.HasSynAck ? MpProxySegment.SynAck : MpProxySegment.MpCapableSyn, Domain, flow, out var check);
        return (signal, check);
    }

    [Test]
    public void Write_OnSynLongForm_OnSynAckShortForm()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Write(Probe, Domain, Syn), Has.Length.EqualTo(16));
            Assert.That(Write(Defer, Domain, SynAck), Has.Length.EqualTo(8));
        });
    }

    [Test]
    public void Read_SignedForThisFlow_Verified()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Read(Write(Probe, Domain, Syn), Syn), Is.EqualTo(((ProxySignal?)Probe, SignalCheck.Verified)));
            Assert.That(Read(Write(Defer, Domain, SynAck), SynAck), Is.EqualTo(((ProxySignal?)Defer, SignalCheck.Verified)));
        });
    }

    [Test]
    public void Read_NoOption_Absent()
    {
        Assert.That(Read([1, 1, 1, 1], Syn), Is.EqualTo(((ProxySignal?)null, SignalCheck.Absent)));
    }

    [Test]
    public void Read_WrongKey_Unverified()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Read(Write(Probe, Other, Syn), Syn), Is.EqualTo(((ProxySignal?)null, SignalCheck.Unverified)));
            Assert.That(Read(Write(Defer, Other, SynAck), SynAck), Is.EqualTo(((ProxySignal?)null, SignalCheck.Unverified)));
        });
    }

    [Test]
    public void Read_TagReplayedFromAnotherFlow_Unverified()
    {
        var otherPort = MpProxyFlow.ForSyn(Client, Server, 40001, 443, 0x1234_5678);
        var otherIsn = MpProxyFlow.ForSyn(Client, Server, 40000, 443, 0x1234_5679);
        var otherSynAck = Syn.WithSynAck(0x9ABC_DEF1);
        Assert.Multiple(() =>
        {
            Assert.That(Read(Write(Probe, Domain, otherPort), Syn).Check, Is.EqualTo(SignalCheck.Unverified));
            Assert.That(Read(Write(Probe, Domain, otherIsn), Syn).Check, Is.EqualTo(SignalCheck.Unverified));
            Assert.That(Read(Write(Defer, Domain, otherSynAck), SynAck).Check, Is.EqualTo(SignalCheck.Unverified));
            Assert.That(Read(Write(Probe, Domain, Syn), SynAck).Check, Is.EqualTo(SignalCheck.NotAllowed), "a SYN's (long) option replayed on a SYN/ACK");
        });
    }

    [TestCase(1)]
    [TestCase(3)]
    [TestCase(15)]
    public void Read_TruncatedOption_Malformed(int cut)
    {
        var bytes = Write(Probe, Domain, Syn);
        Assert.That(Read(bytes[..^cut], Syn), Is.EqualTo(((ProxySignal?)null, SignalCheck.Malformed)));
    }

    [TestCase(12)]
    [TestCase(20)]
    [TestCase(40)]
    public void Read_OversizedOrOddLength_Malformed(int length)
    {
        var bytes = new byte[Math.Max(length, 16)];
        Write(Probe, Domain, Syn).CopyTo(bytes, 0);
        bytes[1] = (byte)length;
        Assert.That(Read(bytes, Syn), Is.EqualTo(((ProxySignal?)null, SignalCheck.Malformed)));
    }

    [TestCase(0)]
    [TestCase(2)]
    [TestCase(15)]
    public void Read_UnknownVersion_Absent(int version)
    {
        // Spec §5.6: another version is not MP_PROXY version 1, skipped like another experiment's option.
        var bytes = Write(Probe, Domain, Syn);
        bytes[2] = (byte)((bytes[2] & 0xF0) | version);
        Assert.That(Read(bytes, Syn), Is.EqualTo(((ProxySignal?)null, SignalCheck.Absent)));
    }

    [Test]
    public void Read_FieldChangedAfterSigning_Unverified()
    {
        var bytes = Write(Probe, Domain, Syn);
        bytes[4] = (byte)((bytes[4] & 0xF0) | 15);
        Assert.That(Read(bytes, Syn).Check, Is.EqualTo(SignalCheck.Unverified), "priority raised in transit");
    }

    [Test]
    public void Read_TwoOptions_Malformed()
    {
        var one = Write(Probe, Domain, Syn);
        Assert.That(Read([.. one, .. one], Syn).Check, Is.EqualTo(SignalCheck.Malformed));
    }

    [Test]
    public void Read_PresenceForm_NeverASignal()
    {
        var bytes = new byte[4];
        MpProxyCodec.Write(bytes, MpProxyOption.Presence());
        Assert.Multiple(() =>
        {
            // On an MP_JOIN SYN/ACK, its one place, it has no tag to verify; anywhere else it is not allowed (spec §5.1).
            Assert.That(SignalCodec.Read(bytes, MpProxySegment.JoinSynAck, Domain, SynAck, out var check), Is.Null);
            Assert.That(check, Is.EqualTo(SignalCheck.Unverified));
            Assert.That(Read(bytes, SynAck), Is.EqualTo(((ProxySignal?)null, SignalCheck.NotAllowed)));
        });
    }

    [Test]
    public void SpoofedDeferOnProbeAnswer_ProxyStillActs()
    {
        // A forged Defer (wrong key) on the server's TCP-only answer must not make the prober give up.
        using var h = new NegotiatorHarness();
        var d = h.OnSyn(1000);
        var forged = Write(Defer, Other, SynAck);
        h.Negotiator.OnProbeAnswered(d.ProbeId, new ProbeAnswer(MpCapable: false, SignalCodec.Read(forged, MpProxySegment.SynAck, Domain, SynAck, out _)));
        Assert.That(h.Single().Outcome, Is.EqualTo(HoldOutcome.Intercept));
    }

    [Test]
    public void SpoofedClaimOnClientSyn_ProxyStillNegotiates()
    {
        // A replayed Claim would make every proxy pass the client's SYN as an already-held leg.
        using var h = new NegotiatorHarness();
        var replayed = Write(new ProxySignal(SignalKind.Claim, 7, 0), Domain, MpProxyFlow.ForSyn(Client, Server, 40001, 443, 1));
        var signal = SignalCodec.Read(replayed, MpProxySegment.MpCapableSyn, Domain, Syn, out _);
        Assert.That(h.OnSyn(1000, signal: signal).Verdict, Is.EqualTo(SynVerdict.HoldAndProbe));
    }
}

/// <summary>The checks of spec §5.5 that come before the tag: one form per segment (§5.1), proxy id not 0.</summary>
public class SignalCodecSegmentTests
{
    private static readonly byte[] Client = [198, 18, 0, 1];
    private static readonly byte[] Server = [198, 18, 1, 1];
    private static readonly MpProxyKeyRing Domain = new(1, Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
    private static readonly MpProxyFlow Syn = MpProxyFlow.ForSyn(Client, Server, 40000, 443, 0x1234_5678);
    private static readonly MpProxyFlow SynAck = Syn.WithSynAck(0x9ABC_DEF0);

    /// <summary>Signs <paramref name="option"/> for <paramref name="flow"/> with the domain key and returns its bytes.</summary>
    private static byte[] Signed(MpProxyOption option, in MpProxyFlow flow)
    {
        Domain.Sign(ref option, flow);
        var bytes = new byte[option.WireLength];
        MpProxyCodec.Write(bytes, option);
        return bytes;
    }

    private static SignalCheck Check(byte[] options, MpProxySegment segment, in MpProxyFlow flow)
    {
        SignalCodec.Read(options, segment, Domain, flow, out var check);
        return check;
    }

    [Test]
    public void LongDeferOnSynAck_CorrectlySigned_NotAllowed()
    {
        // A long-form Defer would fit a synthesized SYN/ACK without MP_CAPABLE; this version defines only the short one.
        var bytes = Signed(MpProxyOption.Long(MpProxyMessage.Defer, 5, 7), SynAck);
        Assert.That(SignalCodec.Read(bytes, MpProxySegment.SynAck, Domain, SynAck, out var check), Is.Null);
        Assert.That(check, Is.EqualTo(SignalCheck.NotAllowed));
    }

    [TestCase(MpProxySegment.MpCapableSyn)]
    [TestCase(MpProxySegment.TcpSyn)]
    public void ShortFormOnNonJoinSyn_CorrectlySigned_NotAllowed(MpProxySegment segment)
    {
        var bytes = Signed(MpProxyOption.Short(MpProxyMessage.Claim, 5, 7), Syn);
        Assert.That(Check(bytes, segment, Syn), Is.EqualTo(SignalCheck.NotAllowed));
    }

    [Test]
    public void ShortUpgradeOnJoinSyn_Verified()
    {
        var bytes = Signed(MpProxyOption.Short(MpProxyMessage.Upgrade, 5, 7), Syn);
        Assert.That(SignalCodec.Read(bytes, MpProxySegment.JoinSyn, Domain, Syn, out var check), Is.EqualTo(new ProxySignal(SignalKind.Upgrade, 7, 5)));
        Assert.That(check, Is.EqualTo(SignalCheck.Verified));
    }

    [TestCase(MpProxyMessage.Defer)]
    [TestCase(MpProxyMessage.Offer)]
    public void MessageNotDefinedForASyn_NotAllowed(MpProxyMessage message)
    {
        var bytes = Signed(MpProxyOption.Long(message, 5, 7), Syn);
        Assert.That(Check(bytes, MpProxySegment.MpCapableSyn, Syn), Is.EqualTo(SignalCheck.NotAllowed));
    }

    [Test]
    public void ProbeOnPlainTcpSyn_NotAllowed()
    {
        var bytes = Signed(MpProxyOption.Long(MpProxyMessage.Probe, 5, 7), Syn);
        Assert.Multiple(() =>
        {
            Assert.That(Check(bytes, MpProxySegment.TcpSyn, Syn), Is.EqualTo(SignalCheck.NotAllowed));
            Assert.That(Check(bytes, MpProxySegment.MpCapableSyn, Syn), Is.EqualTo(SignalCheck.Verified));
        });
    }

    [Test]
    public void ProxyIdZero_CorrectlySigned_NotAllowed()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Check(Signed(MpProxyOption.Long(MpProxyMessage.Probe, 5, 0), Syn), MpProxySegment.MpCapableSyn, Syn), Is.EqualTo(SignalCheck.NotAllowed));
            Assert.That(Check(Signed(MpProxyOption.Short(MpProxyMessage.Defer, 5, 0), SynAck), MpProxySegment.SynAck, SynAck), Is.EqualTo(SignalCheck.NotAllowed));
        });
    }

    [Test]
    public void ForeignExperimentOptionBesideAVerifiedOne_StillVerified()
    {
        var bytes = Signed(MpProxyOption.Short(MpProxyMessage.Defer, 5, 7), SynAck);
        byte[] foreign = [30, 6, 0xF2, 0x5A, 0xDE, 0xAD];
        Assert.Multiple(() =>
        {
            Assert.That(Check([.. foreign, .. bytes], MpProxySegment.SynAck, SynAck), Is.EqualTo(SignalCheck.Verified));
            Assert.That(Check([.. bytes, .. foreign], MpProxySegment.SynAck, SynAck), Is.EqualTo(SignalCheck.Verified));
        });
    }

    [TestCase(SynKind.Tcp, MpProxySegment.TcpSyn)]
    [TestCase(SynKind.MpCapable, MpProxySegment.MpCapableSyn)]
    [TestCase(SynKind.MpCapableV0, MpProxySegment.MpCapableSyn)]
    [TestCase(SynKind.MpJoin, MpProxySegment.JoinSyn)]
    public void SegmentOf_SynKind(SynKind kind, MpProxySegment segment)
    {
        Assert.That(SignalCodec.SegmentOf(kind), Is.EqualTo(segment));
    }
}

/// <summary>The overload that takes the segment type from the option list itself.</summary>
public class SignalCodecSegmentFromOptionsTests
{
    private static readonly MpProxyKeyRing Domain = new(1, Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
    private static readonly MpProxyFlow Syn = MpProxyFlow.ForSyn([198, 18, 0, 1], [198, 18, 1, 1], 40000, 443, 7);
    private static readonly byte[] MpCapableSyn = [30, 4, 0x01, 0x01];

    private static byte[] SignedProbe()
    {
        var option = MpProxyOption.Long(MpProxyMessage.Probe, 5, 7);
        Domain.Sign(ref option, Syn);
        var bytes = new byte[16];
        MpProxyCodec.Write(bytes, option);
        return bytes;
    }

    [Test]
    public void ProbeBesideMpCapable_Verified_ProbeOnPlainSyn_NotAllowed()
    {
        var probe = SignedProbe();
        SignalCodec.Read([.. MpCapableSyn, .. probe], Domain, Syn, out var withMpCapable);
        SignalCodec.Read(probe, Domain, Syn, out var plain);
        Assert.Multiple(() =>
        {
            Assert.That(withMpCapable, Is.EqualTo(SignalCheck.Verified));
            Assert.That(plain, Is.EqualTo(SignalCheck.NotAllowed));
        });
    }
}
