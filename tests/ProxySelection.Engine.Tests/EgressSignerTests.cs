using System.Net;
using ProxySelection.Engine;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Tests;

public sealed class EgressSignerTests
{
    private const ushort ClientPort = 40_000;
    private static readonly MpProxyKeyRing Ring = new(1, Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
    private static readonly MpCapable SynCapable = new(MpCapableForm.NoKey, 1, MpCapableFlags.HmacSha256);

    // MSS 1460, SACK permitted, timestamps, NOP, window scale 7: 20 bytes, as Linux writes a TCP SYN.
    private static readonly byte[] StockTcpSynOptions = [2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];

    [TestCase(false)]
    [TestCase(true)]
    public void Rewrite_ProbeSynExpected_AddsSignedProbeWithValidChecksums(bool v6)
    {
        var syn = PacketBuilder.Build(v6, ClientPort, TcpFlags.Syn, SynCapable);
        var signer = new EgressSigner(Ring);
        signer.ExpectSyn(ClientPort, ServerOf(syn), new ProxySignal(SignalKind.Probe, 7, 9));

        Assert.That(signer.Rewrite(syn, out var rewritten, out int length), Is.EqualTo(EgressRewrite.Probe));

        var packet = rewritten.AsSpan(0, length);
        Assert.That(length, Is.EqualTo(syn.Length + 16), "the 16-byte form on a SYN");
        Assert.That(VerifiedSynSignal(packet), Is.EqualTo(new ProxySignal(SignalKind.Probe, 7, 9)));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Rewrite_SynAckOfInterceptedFlow_AddsSignedClaimBoundToBothIsns(bool v6)
    {
        // The builder's SYN/ACK goes from ClientPort to ServerPort: here the "server" (original destination) is the
        // source, the client the destination.
        var synAck = PacketBuilder.Build(v6, ClientPort, TcpFlags.Syn | TcpFlags.Ack, new MpCapable(MpCapableForm.SenderKey, 1, MpCapableFlags.HmacSha256, 0x1122334455667788));
        Assert.That(TcpPacket.TryParse(synAck, out var original), Is.EqualTo(WireError.None));
        var server = new IPEndPoint(new IPAddress(original.Ip.SourceAddress), ClientPort);
        var client = new IPEndPoint(new IPAddress(original.Ip.DestinationAddress), PacketBuilder.ServerPort);
        var signer = new EgressSigner(Ring);
        signer.ExpectSynAck(new FlowEndPoints(client, server), new ProxySignal(SignalKind.Claim, 7, 9));

        Assert.That(signer.Rewrite(synAck, out var rewritten, out int length), Is.EqualTo(EgressRewrite.SynAck));

        var packet = rewritten.AsSpan(0, length);
        Assert.That(length, Is.EqualTo(synAck.Length + 8), "the 8-byte form on a SYN/ACK");
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.None));
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        var tcp = parsed.Tcp;
        var flow = MpProxyFlow.ForSyn(parsed.Ip.DestinationAddress, parsed.Ip.SourceAddress, tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1)
            .WithSynAck(tcp.SequenceNumber);
        var signal = SignalCodec.Read(tcp.Options, Ring, flow, out var check);
        Assert.That(check, Is.EqualTo(SignalCheck.Verified));
        Assert.That(signal?.Kind, Is.EqualTo(SignalKind.Claim));
        Assert.That(signal?.ProxyId, Is.EqualTo(7));
        // Retransmitted SYN/ACKs get the claim too, until the connection is accepted.
        Assert.That(signer.Rewrite(synAck, out _, out _), Is.EqualTo(EgressRewrite.SynAck));
        signer.ForgetClaim(new FlowEndPoints(client, server));
        Assert.That(signer.Rewrite(synAck, out _, out _), Is.EqualTo(EgressRewrite.Untouched));
    }

    [Test]
    public void Rewrite_NothingExpected_LeavesPacket()
    {
        var signer = new EgressSigner(Ring);
        Assert.That(signer.Rewrite(PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, SynCapable), out _, out _), Is.EqualTo(EgressRewrite.Untouched));
        Assert.That(signer.Rewrite(PacketBuilder.Build(false, ClientPort, TcpFlags.Syn | TcpFlags.Ack, SynCapable), out _, out _), Is.EqualTo(EgressRewrite.Untouched));
    }

    [Test]
    public void Rewrite_NotASyn_LeavesPacketEvenWhenExpected()
    {
        var ack = PacketBuilder.Build(false, ClientPort, TcpFlags.Ack, SynCapable);
        var signer = new EgressSigner(Ring);
        signer.ExpectSyn(ClientPort, ServerOf(ack), new ProxySignal(SignalKind.Probe, 1, 8));
        Assert.That(signer.Rewrite(ack, out _, out _), Is.EqualTo(EgressRewrite.Untouched));
    }

    [Test]
    public void Rewrite_NoOptionRoomLeft_LeavesPacket()
    {
        // 36 bytes of options already: the 16-byte probe cannot fit in 40.
        var options = new byte[36];
        Array.Fill(options, (byte)TcpOptionKind.Nop);
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, options);
        var signer = new EgressSigner(Ring);
        signer.ExpectSyn(ClientPort, ServerOf(syn), new ProxySignal(SignalKind.Probe, 1, 8));
        Assert.That(signer.Rewrite(syn, out _, out _), Is.EqualTo(EgressRewrite.NoRoom));
    }

    [Test]
    public void Rewrite_Garbage_LeavesPacket()
    {
        var signer = new EgressSigner(Ring);
        Assert.That(signer.Rewrite([0x45, 0, 0, 20], out _, out _), Is.EqualTo(EgressRewrite.Untouched));
        Assert.That(signer.Rewrite([], out _, out _), Is.EqualTo(EgressRewrite.Untouched));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Rewrite_UpstreamLegExpected_AddsSignedLongClaimToPlainTcpSyn(bool v6)
    {
        // A plain TCP SYN as the kernel writes it: MSS, SACK permitted, timestamps, window scale (20 bytes).
        var syn = PacketBuilder.Build(v6, ClientPort, TcpFlags.Syn, StockTcpSynOptions);
        var server = ServerOf(syn);
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(server, new ProxySignal(SignalKind.Claim, 7, 9));

        Assert.That(signer.Rewrite(syn, out var rewritten, out int length), Is.EqualTo(EgressRewrite.Upstream));

        var packet = rewritten.AsSpan(0, length);
        Assert.That(length, Is.EqualTo(syn.Length + 16), "the long form fills the 20 bytes a plain SYN has left but 4");
        Assert.That(VerifiedSynSignal(packet), Is.EqualTo(new ProxySignal(SignalKind.Claim, 7, 9)));
    }

    [Test]
    public void Rewrite_UpstreamLegsToOneDestination_SignedUntilTheLastLegIsForgotten()
    {
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, StockTcpSynOptions);
        var server = ServerOf(syn);
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(server, new ProxySignal(SignalKind.Claim, 7, 9));
        signer.ExpectUpstreamSyn(server, new ProxySignal(SignalKind.Claim, 7, 9));

        signer.ForgetUpstreamSyn(server);
        Assert.That(signer.Rewrite(syn, out _, out _), Is.EqualTo(EgressRewrite.Upstream), "one leg still connecting");
        signer.ForgetUpstreamSyn(server);
        Assert.That(signer.Rewrite(syn, out _, out _), Is.EqualTo(EgressRewrite.Untouched));
        Assert.That(signer.Pending, Is.Zero);
    }

    [Test]
    public void Rewrite_ForwardedSynToADestinationWhoseLegConnects_LeftAsItIs()
    {
        // A client's SYN routed through this host with the mark bit set by the operator's own policy: not ours to sign.
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, StockTcpSynOptions);
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(ServerOf(syn), new ProxySignal(SignalKind.Claim, 7, 9));
        signer.ExpectSyn(ClientPort, ServerOf(syn), new ProxySignal(SignalKind.Probe, 7, 9));

        Assert.Multiple(() =>
        {
            Assert.That(signer.Rewrite(syn, inDeviceIndex: 3, out var rewritten, out int length), Is.EqualTo(EgressRewrite.Forwarded));
            Assert.That((rewritten.Length, length), Is.EqualTo((0, 0)));
            Assert.That(signer.Rewrite(syn, inDeviceIndex: 0, out _, out _), Is.EqualTo(EgressRewrite.Probe), "the host's own SYN still is");
        });
    }

    [Test]
    public void Rewrite_UpstreamLegToAnotherDestination_LeavesPacket()
    {
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, StockTcpSynOptions);
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(new IPEndPoint(ServerOf(syn).Address, PacketBuilder.ServerPort + 1), new ProxySignal(SignalKind.Claim, 7, 9));

        Assert.That(signer.Rewrite(syn, out _, out _), Is.EqualTo(EgressRewrite.Untouched));
    }

    [Test]
    public void Rewrite_JoinSynWhileUpstreamLegConnects_LeavesPacket()
    {
        var join = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, MpJoin.Syn(false, 1, 0x01020304, 0x05060708));
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(ServerOf(join), new ProxySignal(SignalKind.Upgrade, 7, 9));

        Assert.That(signer.Rewrite(join, out _, out _), Is.EqualTo(EgressRewrite.Untouched));
    }

    [Test]
    public void Rewrite_ProbeAndUpstreamLegToOneDestination_ProbeKeepsItsSignal()
    {
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, SynCapable);
        var server = ServerOf(syn);
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(server, new ProxySignal(SignalKind.Claim, 7, 9));
        signer.ExpectSyn(ClientPort, server, new ProxySignal(SignalKind.Probe, 7, 9));

        Assert.That(signer.Rewrite(syn, out _, out _), Is.EqualTo(EgressRewrite.Probe));
    }

    [Test]
    public void Rewrite_UpstreamLegWithoutOptionRoom_LeavesPacketAndSaysNoRoom()
    {
        var options = new byte[28];
        Array.Fill(options, (byte)TcpOptionKind.Nop);
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, options);
        var signer = new EgressSigner(Ring);
        signer.ExpectUpstreamSyn(ServerOf(syn), new ProxySignal(SignalKind.Claim, 7, 9));

        Assert.That(signer.Rewrite(syn, out var rewritten, out int length), Is.EqualTo(EgressRewrite.NoRoom));
        Assert.That(length, Is.Zero);
        Assert.That(rewritten, Is.Empty);
    }

    /// <summary>The MP_PROXY of a SYN with valid checksums, verified under the ring over the SYN's own flow.</summary>
    private static ProxySignal? VerifiedSynSignal(ReadOnlySpan<byte> packet)
    {
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.None));
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        var flow = MpProxyFlow.ForSyn(parsed.Ip.SourceAddress, parsed.Ip.DestinationAddress, parsed.Tcp.SourcePort, parsed.Tcp.DestinationPort, parsed.Tcp.SequenceNumber);
        var signal = SignalCodec.Read(parsed.Tcp.Options, Ring, flow, out var check);
        Assert.That(check, Is.EqualTo(SignalCheck.Verified));
        return signal;
    }

    /// <summary>The packet's destination, the server its SYN is for.</summary>
    private static IPEndPoint ServerOf(byte[] packet)
    {
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        return new IPEndPoint(new IPAddress(parsed.Ip.DestinationAddress), parsed.Tcp.DestinationPort);
    }
}
