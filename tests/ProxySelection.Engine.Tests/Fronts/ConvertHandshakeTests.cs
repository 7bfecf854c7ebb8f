using System.Net;
using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Engine.Fronts;
using ProxySelection.Relay;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Engine.Tests.Fronts;

/// <summary>The Transport Converter side of RFC 8803 as a pure state machine.</summary>
public sealed class ConvertHandshakeTests
{
    private static readonly IPEndPoint Server = IPEndPoint.Parse("198.18.3.2:80");

    private static (Socks5Step Step, int Consumed, byte[] Reply, ConvertHandshake Handshake) Advance(byte[] input)
    {
        var handshake = new ConvertHandshake();
        var step = handshake.Advance(input, out int consumed, out var reply);
        return (step, consumed, reply, handshake);
    }

    [Test]
    public void ConnectMessage_IPv4_TwentyFourBytesAsRfc8803Lays()
    {
        Assert.That(ConvertHandshake.ConnectMessage(Server), Is.EqualTo(new byte[]
        {
            1, 6, 0x22, 0x63, // version 1, 6 words, magic
            10, 5, 0, 80, // Connect TLV, 5 words, port 80
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 3, 2, // IPv4-mapped address
        }));
    }

    [Test]
    public void Advance_ConnectIPv4_TargetIsTheServerAndDataIsLeft()
    {
        var (step, consumed, reply, handshake) = Advance([.. ConvertHandshake.ConnectMessage(Server), .. "GET /"u8]);
        Assert.Multiple(() =>
        {
            Assert.That(step, Is.EqualTo(Socks5Step.Connect));
            Assert.That(consumed, Is.EqualTo(24), "the bytes behind the message are the server's");
            Assert.That(reply, Is.Empty);
            Assert.That(handshake.Target, Is.EqualTo(new Socks5Target(IPAddress.Parse("198.18.3.2"), null, 80)));
        });
    }

    [Test]
    public void Advance_ConnectIPv6_TargetIsTheServer()
    {
        var server = IPEndPoint.Parse("[2001:db8:3::2]:8080");
        var (step, _, _, handshake) = Advance(ConvertHandshake.ConnectMessage(server));
        Assert.That((step, handshake.Target), Is.EqualTo((Socks5Step.Connect, new Socks5Target(server.Address, null, 8080))));
    }

    [Test]
    public void Advance_PartialMessage_NeedsMoreAndConsumesNothing()
    {
        var message = ConvertHandshake.ConnectMessage(Server);
        for (int length = 0; length < message.Length; length++)
        {
            var (step, consumed, _, _) = Advance(message[..length]);
            Assert.That((step, consumed), Is.EqualTo((Socks5Step.NeedMore, 0)), $"{length} bytes");
        }
    }

    private static byte[] WithTlv(byte type, byte words, params byte[] value) =>
        [1, (byte)(1 + words), 0x22, 0x63, type, words, .. value, .. new byte[(words * 4) - 2 - value.Length]];

    /// <summary>Header and Error TLV as RFC 8803 lays them: code, then the value padded to 32 bits.</summary>
    private static byte[] Error(byte code, params byte[] value)
    {
        int tlv = Math.Max(4, (3 + value.Length + 3) / 4 * 4);
        return [1, (byte)(1 + (tlv / 4)), 0x22, 0x63, 30, (byte)(tlv / 4), code, .. value, .. new byte[tlv - 3 - value.Length]];
    }

    /// <summary>Malformed and Unsupported Message echo the message received, behind one zero byte (its alignment kept).</summary>
    private static byte[] Echo(byte code, byte[] message) => Error(code, [0, .. message]);

    private static readonly byte[] TwoConnects = [1, 11, 0x22, 0x63, .. ConvertHandshake.ConnectMessage(Server)[4..], .. ConvertHandshake.ConnectMessage(Server)[4..]];

    private static readonly object[] Refused =
    [
        new object[] { new byte[] { 2, 6, 0x22, 0x63 }, Error(0, 1), "version 2: the value names version 1" },
        new object[] { new byte[] { 1, 6, 0x22, 0x64 }, Echo(1, [1, 6, 0x22, 0x64]), "bad magic" },
        new object[] { new byte[] { 1, 1, 0x22, 0x63 }, Echo(2, [1, 1, 0x22, 0x63]), "no Connect TLV" },
        new object[] { WithTlv(22, 1), Echo(2, WithTlv(22, 1)), "Cookie TLV" },
        new object[] { WithTlv(0, 1), Echo(2, WithTlv(0, 1)), "TLV type 0" },
        new object[] { WithTlv(200, 1), Echo(2, WithTlv(200, 1)), "private TLV" },
        new object[] { WithTlv(10, 4, 0, 80), Echo(1, WithTlv(10, 4, 0, 80)), "short Connect TLV" },
        new object[] { WithTlv(10, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 3, 2), Echo(1, WithTlv(10, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 3, 2)), "port 0" },
        new object[] { WithTlv(10, 5, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1), Echo(1, WithTlv(10, 5, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1)), "loopback" },
        new object[] { WithTlv(10, 5, 0, 80, 0xFF, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), Echo(1, WithTlv(10, 5, 0, 80, 0xFF, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)), "multicast" },
        new object[] { WithTlv(10, 5, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 255, 255, 255, 255), Echo(1, WithTlv(10, 5, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 255, 255, 255, 255)), "broadcast" },
        new object[] { new byte[] { 1, 2, 0x22, 0x63, 10, 0, 0, 0 }, Echo(1, [1, 2, 0x22, 0x63, 10, 0, 0, 0]), "TLV length 0" },
        new object[] { new byte[] { 1, 2, 0x22, 0x63, 10, 5, 0, 80 }, Echo(1, [1, 2, 0x22, 0x63, 10, 5, 0, 80]), "TLV beyond the message" },
        new object[] { TwoConnects, Echo(1, TwoConnects), "two Connect TLVs" },
    ];

    [TestCaseSource(nameof(Refused))]
    public void Advance_MalformedOrUnsupported_RfcErrorTlvAndClose(byte[] message, byte[] expected, string what)
    {
        var (step, _, reply, handshake) = Advance(message);
        Assert.Multiple(() =>
        {
            Assert.That(step, Is.EqualTo(Socks5Step.Close), what);
            Assert.That(reply, Is.EqualTo(expected), what);
            Assert.That(reply.Length % 4, Is.Zero, what + ": 32-bit aligned");
            Assert.That(reply[1] * 4, Is.EqualTo(reply.Length), what + ": Total Length covers the message");
            Assert.That(handshake.Failure, Is.Not.Null, what);
        });
    }

    [Test]
    public void Advance_TotalLengthZero_ResetWithoutReply()
    {
        var (step, _, reply, handshake) = Advance([1, 0, 0x22, 0x63]);
        Assert.That((step, reply, handshake.Failure), Is.EqualTo((Socks5Step.Close, Array.Empty<byte>(), "total length 0")), "RFC 8803: the connection MUST be reset");
    }

    [Test]
    public void Advance_InfoTlv_SupportedTcpExtensionsTlvWithMptcp()
    {
        var (step, consumed, reply, handshake) = Advance([1, 2, 0x22, 0x63, 1, 1, 0, 0]);
        Assert.Multiple(() =>
        {
            Assert.That(step, Is.EqualTo(Socks5Step.Close), "nothing to connect: answered, then closed");
            Assert.That(consumed, Is.EqualTo(8));
            // Type 21, one word of header (Unassigned 0), then the kinds: 30 (MPTCP), padded with zeros.
            Assert.That(reply, Is.EqualTo(new byte[] { 1, 3, 0x22, 0x63, 21, 2, 0, 0, 30, 0, 0, 0 }));
            Assert.That(handshake.Failure, Is.Null, "an Info exchange is not a failure");
        });
    }

    [Test]
    public void Advance_InfoAndConnect_ConnectsAndTheSuccessCarriesTheSupportedTcpExtensions()
    {
        byte[] message = [1, 7, 0x22, 0x63, 1, 1, 0, 0, .. ConvertHandshake.ConnectMessage(Server)[4..]];
        var (step, _, _, handshake) = Advance(message);
        Assert.Multiple(() =>
        {
            Assert.That(step, Is.EqualTo(Socks5Step.Connect));
            Assert.That(handshake.Succeeded(null), Is.EqualTo(new byte[] { 1, 3, 0x22, 0x63, 21, 2, 0, 0, 30, 0, 0, 0 }));
        });
    }

    [Test]
    public void Advance_TwoInfoTlvs_MalformedMessage()
    {
        byte[] message = [1, 3, 0x22, 0x63, 1, 1, 0, 0, 1, 1, 0, 0];
        Assert.That(Advance(message).Reply, Is.EqualTo(Echo(1, message)));
    }

    [Test]
    public void Advance_ConnectWithOptions_UnsupportedTcpOptionListsEveryRefusedKind()
    {
        // MSS (2) and NOP (1) are ignored (RFC 8803: base options); SACK-permitted (4) and timestamps (8) are refused.
        byte[] options = [2, 4, 5, 180, 1, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0];
        byte[] message = [1, (byte)(6 + (options.Length / 4)), 0x22, 0x63, 10, (byte)(5 + (options.Length / 4)), 0, 80, .. ConvertHandshake.ConnectMessage(Server)[8..], .. options];
        var (step, _, reply, _) = Advance(message);
        Assert.That((step, reply), Is.EqualTo((Socks5Step.Close, Error(33, 4, 8))));
    }

    [Test]
    public void Advance_ConnectWithOnlyBaseOptions_Connects()
    {
        byte[] options = [2, 4, 5, 180];
        byte[] message = [1, 7, 0x22, 0x63, 10, 6, 0, 80, .. ConvertHandshake.ConnectMessage(Server)[8..], .. options];
        var (step, _, _, handshake) = Advance(message);
        Assert.That((step, handshake.Target), Is.EqualTo((Socks5Step.Connect, new Socks5Target(IPAddress.Parse("198.18.3.2"), null, 80))));
    }

    [Test]
    public void EchoError_MessageOfTheLongestLength_CutToFitOneConvertMessage()
    {
        var reply = ConvertHandshake.EchoError(ConvertError.MalformedMessage, new byte[ConvertHandshake.MaxMessageLength]);
        Assert.That((reply.Length, reply[1]), Is.EqualTo((ConvertHandshake.MaxMessageLength, (byte)255)));
    }

    [TestCase(0x05, 96, 0, TestName = "Failed_ConnectionRefused_ConnectionResetValueZero")]
    [TestCase(0x02, 32, 0, TestName = "Failed_NotAllowed_NotAuthorizedValueZero")]
    [TestCase(0x04, 65, 1, TestName = "Failed_HostUnreachableWithoutIcmp_NetworkFailureRetryAfterOneSecond")]
    [TestCase(0x06, 65, 1, TestName = "Failed_TimedOut_NetworkFailureRetryAfterOneSecond")]
    [TestCase(0x03, 65, 1, TestName = "Failed_NetworkUnreachableLocally_NetworkFailure")]
    [TestCase(0x01, 65, 1, TestName = "Failed_GeneralFailure_NetworkFailure")]
    public void Failed_UpstreamFailureWithoutIcmp_MatchingErrorTlv(int socksReply, int convertError, int value) =>
        Assert.That(new ConvertHandshake().Failed((SocksReply)socksReply), Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, (byte)convertError, (byte)value }));

    [TestCase(false, 3, 1, TestName = "Failed_IcmpHostUnreachable_DestinationUnreachableEchoesCode1")]
    [TestCase(false, 3, 3, TestName = "Failed_IcmpPortUnreachable_DestinationUnreachableEchoesCode3")]
    [TestCase(false, 3, 13, TestName = "Failed_IcmpAdminProhibited_DestinationUnreachableEchoesCode13")]
    [TestCase(true, 1, 4, TestName = "Failed_Icmp6PortUnreachable_DestinationUnreachableEchoesCode4")]
    [TestCase(true, 1, 1, TestName = "Failed_Icmp6AdminProhibited_DestinationUnreachableEchoesCode1")]
    public void Failed_IcmpDestinationUnreachable_ErrorTlv97WithTheIcmpCode(bool v6, int type, int code) =>
        Assert.That(new ConvertHandshake().Failed(SocksReply.HostUnreachable, new IcmpError(v6, (byte)type, (byte)code)),
            Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 97, (byte)code }));

    [Test]
    public void Failed_IcmpTimeExceeded_NotDestinationUnreachable() =>
        Assert.That(new ConvertHandshake().Failed(SocksReply.HostUnreachable, new IcmpError(false, 11, 0)), Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 65, 1 }));

    [Test]
    public void AtCapacity_ResourceExceededRetryAfterOneSecond() =>
        Assert.That(new ConvertHandshake().AtCapacity(), Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 64, 1 }));

    [Test]
    public void Succeeded_HeaderWithoutTlvs() =>
        Assert.That(new ConvertHandshake().Succeeded(null), Is.EqualTo(new byte[] { 1, 1, 0x22, 0x63 }));

    // Any bytes end in NeedMore (nothing consumed), a Connect with a usable target, or a Close with an Error TLV.
    [FsProperty(MaxTest = 3000)]
    public Property Advance_AnyBytes_DefinedStepOrErrorTlv() =>
        Prop.ForAll(Inputs().ToArbitrary(), input =>
        {
            var handshake = new ConvertHandshake();
            var step = handshake.Advance(input, out int consumed, out var reply);
            return step switch
            {
                Socks5Step.NeedMore => consumed == 0 && reply.Length == 0,
                Socks5Step.Connect => consumed >= 24 && consumed <= input.Length && handshake.Target.Port != 0 && handshake.Target.Address is not null,
                // A reset (no reply), the answer to an Info, or one Error TLV of a defined code filling a whole, aligned message.
                Socks5Step.Close => reply.Length == 0
                    || reply is [1, 3, 0x22, 0x63, 21, 2, 0, 0, 30, 0, 0, 0]
                    || (reply is [1, _, 0x22, 0x63, 30, _, var code, ..] && Enum.IsDefined((ConvertError)code)
                        && reply.Length % 4 == 0 && reply[1] * 4 == reply.Length && reply[5] * 4 == reply.Length - 4),
                _ => false,
            };
        });

    /// <summary>Random messages that often get past the header: version 1 and the magic, then TLV-like bytes.</summary>
    private static Gen<byte[]> Inputs()
    {
        var any = Gen.Choose(0, 255).Select(i => (byte)i);
        var interesting = Gen.Elements<byte>(0, 1, 2, 5, 6, 10, 22, 30, 0x22, 0x63, 0xFF);
        var tail = Gen.Frequency((1, any), (1, interesting)).ArrayOf();
        var header = Gen.Choose(0, 12).Select(words => new byte[] { 1, (byte)words, 0x22, 0x63 });
        return Gen.Frequency(
            (1, tail),
            (3, header.SelectMany(h => tail.Select(t => (byte[])[.. h, .. t]))));
    }
}
