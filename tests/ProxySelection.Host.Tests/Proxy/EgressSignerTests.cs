using System.Net;
using ProxySelection.Host.Proxy;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Tests.Proxy;

public sealed class EgressSignerTests
{
    private const ushort ClientPort = 40_000;
    private static readonly MpProxyKeyRing Ring = new(1, Enumerable.Range(0, 32).Select(i => (byte)i).ToArray());
    private static readonly MpCapable SynCapable = new(MpCapableForm.NoKey, 1, MpCapableFlags.HmacSha256);

    [TestCase(false)]
    [TestCase(true)]
    public void TryRewrite_ProbeSynExpected_AddsSignedProbeWithValidChecksums(bool v6)
    {
        var syn = PacketBuilder.Build(v6, ClientPort, TcpFlags.Syn, SynCapable);
        Assert.That(TcpPacket.TryParse(syn, out var original), Is.EqualTo(WireError.None));
        var signer = new EgressSigner(Ring);
        signer.ExpectSyn(ClientPort, new IPEndPoint(new IPAddress(original.Ip.DestinationAddress), PacketBuilder.ServerPort), new ProxySignal(SignalKind.Probe, 7, 9));

        Assert.That(signer.TryRewrite(syn, out var rewritten, out int length, out bool isSynAck), Is.True);

        var packet = rewritten.AsSpan(0, length);
        Assert.That(isSynAck, Is.False);
        Assert.That(length, Is.EqualTo(syn.Length + 16), "the 16-byte form on a SYN");
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.None));
        Assert.That(TcpPacket.TryParse(packet, out var parsed), Is.EqualTo(WireError.None));
        var flow = MpProxyFlow.ForSyn(parsed.Ip.SourceAddress, parsed.Ip.DestinationAddress, ClientPort, PacketBuilder.ServerPort, parsed.Tcp.SequenceNumber);
        var signal = SignalCodec.Read(parsed.Tcp.Options, Ring, flow, out var check);
        Assert.That(check, Is.EqualTo(SignalCheck.Verified));
        Assert.That(signal, Is.EqualTo(new ProxySignal(SignalKind.Probe, 7, 9)));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void TryRewrite_SynAckOfInterceptedFlow_AddsSignedClaimBoundToBothIsns(bool v6)
    {
        // The builder's SYN/ACK goes from ClientPort to ServerPort: here the "server" (original destination) is the
        // source, the client the destination.
        var synAck = PacketBuilder.Build(v6, ClientPort, TcpFlags.Syn | TcpFlags.Ack, new MpCapable(MpCapableForm.SenderKey, 1, MpCapableFlags.HmacSha256, 0x1122334455667788));
        Assert.That(TcpPacket.TryParse(synAck, out var original), Is.EqualTo(WireError.None));
        var server = new IPEndPoint(new IPAddress(original.Ip.SourceAddress), ClientPort);
        var client = new IPEndPoint(new IPAddress(original.Ip.DestinationAddress), PacketBuilder.ServerPort);
        var signer = new EgressSigner(Ring);
        signer.ExpectSynAck(new FlowEndPoints(client, server), new ProxySignal(SignalKind.Claim, 7, 9));

        Assert.That(signer.TryRewrite(synAck, out var rewritten, out int length, out bool isSynAck), Is.True);

        var packet = rewritten.AsSpan(0, length);
        Assert.That(isSynAck, Is.True);
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
        Assert.That(signer.TryRewrite(synAck, out _, out _, out _), Is.True);
        signer.ForgetClaim(new FlowEndPoints(client, server));
        Assert.That(signer.TryRewrite(synAck, out _, out _, out _), Is.False);
    }

    [Test]
    public void TryRewrite_NothingExpected_LeavesPacket()
    {
        var signer = new EgressSigner(Ring);
        Assert.That(signer.TryRewrite(PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, SynCapable), out _, out _, out _), Is.False);
        Assert.That(signer.TryRewrite(PacketBuilder.Build(false, ClientPort, TcpFlags.Syn | TcpFlags.Ack, SynCapable), out _, out _, out _), Is.False);
    }

    [Test]
    public void TryRewrite_NotASyn_LeavesPacketEvenWhenExpected()
    {
        var ack = PacketBuilder.Build(false, ClientPort, TcpFlags.Ack, SynCapable);
        Assert.That(TcpPacket.TryParse(ack, out var parsed), Is.EqualTo(WireError.None));
        var signer = new EgressSigner(Ring);
        signer.ExpectSyn(ClientPort, new IPEndPoint(new IPAddress(parsed.Ip.DestinationAddress), PacketBuilder.ServerPort), new ProxySignal(SignalKind.Probe, 1, 8));
        Assert.That(signer.TryRewrite(ack, out _, out _, out _), Is.False);
    }

    [Test]
    public void TryRewrite_NoOptionRoomLeft_LeavesPacket()
    {
        // 36 bytes of options already: the 16-byte probe cannot fit in 40.
        var options = new byte[36];
        Array.Fill(options, (byte)TcpOptionKind.Nop);
        var syn = PacketBuilder.Build(false, ClientPort, TcpFlags.Syn, options);
        Assert.That(TcpPacket.TryParse(syn, out var parsed), Is.EqualTo(WireError.None));
        var signer = new EgressSigner(Ring);
        signer.ExpectSyn(ClientPort, new IPEndPoint(new IPAddress(parsed.Ip.DestinationAddress), PacketBuilder.ServerPort), new ProxySignal(SignalKind.Probe, 1, 8));
        Assert.That(signer.TryRewrite(syn, out _, out _, out _), Is.False);
    }

    [Test]
    public void TryRewrite_Garbage_LeavesPacket()
    {
        var signer = new EgressSigner(Ring);
        Assert.That(signer.TryRewrite([0x45, 0, 0, 20], out _, out _, out _), Is.False);
        Assert.That(signer.TryRewrite([], out _, out _, out _), Is.False);
    }
}
