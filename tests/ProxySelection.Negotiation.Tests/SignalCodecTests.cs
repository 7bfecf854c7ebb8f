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
        var signal = SignalCodec.Read(options, Domain, flow, out var check);
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
            Assert.That(Read(Write(Probe, Domain, Syn), SynAck).Check, Is.EqualTo(SignalCheck.Unverified), "a SYN's option replayed on a SYN/ACK");
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
    public void Read_UnknownVersion_Malformed(int version)
    {
        var bytes = Write(Probe, Domain, Syn);
        bytes[2] = (byte)((bytes[2] & 0xF0) | version);
        Assert.That(Read(bytes, Syn), Is.EqualTo(((ProxySignal?)null, SignalCheck.Malformed)));
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
        Assert.That(Read(bytes, SynAck), Is.EqualTo(((ProxySignal?)null, SignalCheck.Unverified)));
    }

    [Test]
    public void SpoofedDeferOnProbeAnswer_ProxyStillActs()
    {
        // A forged Defer (wrong key) on the server's TCP-only answer must not make the prober give up.
        using var h = new NegotiatorHarness();
        var d = h.OnSyn(1000);
        var forged = Write(Defer, Other, SynAck);
        h.Negotiator.OnProbeAnswered(d.ProbeId, new ProbeAnswer(MpCapable: false, SignalCodec.Read(forged, Domain, SynAck, out _)));
        Assert.That(h.Single().Outcome, Is.EqualTo(HoldOutcome.Intercept));
    }

    [Test]
    public void SpoofedClaimOnClientSyn_ProxyStillNegotiates()
    {
        // A replayed Claim would make every proxy pass the client's SYN as an already-held leg.
        using var h = new NegotiatorHarness();
        var replayed = Write(new ProxySignal(SignalKind.Claim, 7, 0), Domain, MpProxyFlow.ForSyn(Client, Server, 40001, 443, 1));
        var signal = SignalCodec.Read(replayed, Domain, Syn, out _);
        Assert.That(h.OnSyn(1000, signal: signal).Verdict, Is.EqualTo(SynVerdict.HoldAndProbe));
    }
}
