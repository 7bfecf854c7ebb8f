using System.Net;
using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Engine.Fronts;
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

    private static readonly object[] Refused =
    [
        new object[] { new byte[] { 2, 6, 0x22, 0x63 }, (byte)ConvertError.UnsupportedVersion, "version 2" },
        new object[] { new byte[] { 1, 6, 0x22, 0x64 }, (byte)ConvertError.MalformedMessage, "bad magic" },
        new object[] { new byte[] { 1, 0, 0x22, 0x63 }, (byte)ConvertError.MalformedMessage, "total length 0" },
        new object[] { new byte[] { 1, 1, 0x22, 0x63 }, (byte)ConvertError.UnsupportedMessage, "no Connect TLV" },
        new object[] { WithTlv(1, 1), (byte)ConvertError.UnsupportedMessage, "Info TLV" },
        new object[] { WithTlv(22, 1), (byte)ConvertError.UnsupportedMessage, "Cookie TLV" },
        new object[] { WithTlv(200, 1), (byte)ConvertError.UnsupportedMessage, "private TLV" },
        new object[] { WithTlv(10, 4, 0, 80), (byte)ConvertError.MalformedMessage, "short Connect TLV" },
        new object[] { WithTlv(10, 6, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 3, 2, 2, 4, 5, 180), (byte)ConvertError.UnsupportedTcpOption, "options" },
        new object[] { WithTlv(10, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 3, 2), (byte)ConvertError.MalformedMessage, "port 0" },
        new object[] { new byte[] { 1, 2, 0x22, 0x63, 10, 0, 0, 0 }, (byte)ConvertError.MalformedMessage, "TLV length 0" },
        new object[] { new byte[] { 1, 2, 0x22, 0x63, 10, 5, 0, 80 }, (byte)ConvertError.MalformedMessage, "TLV beyond the message" },
        new object[] { (byte[])[1, 11, 0x22, 0x63, .. ConvertHandshake.ConnectMessage(Server)[4..], .. ConvertHandshake.ConnectMessage(Server)[4..]], (byte)ConvertError.MalformedMessage, "two Connect TLVs" },
    ];

    [TestCaseSource(nameof(Refused))]
    public void Advance_MalformedOrUnsupported_ErrorTlvAndClose(byte[] message, byte error, string what)
    {
        var (step, _, reply, handshake) = Advance(message);
        // RFC 8803 §5.2.7: Unsupported Version carries the supported version, Unsupported TCP Option the option kind.
        byte value = error switch
        {
            (byte)ConvertError.UnsupportedVersion => 1,
            (byte)ConvertError.UnsupportedTcpOption => message[24],
            _ => 0,
        };
        Assert.Multiple(() =>
        {
            Assert.That(step, Is.EqualTo(Socks5Step.Close), what);
            Assert.That(reply, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, error, value }), what);
            Assert.That(handshake.Failure, Is.Not.Null, what);
        });
    }

    [TestCase(0x05, 96, TestName = "Failed_ConnectionRefused_ConnectionReset")]
    [TestCase(0x04, 97, TestName = "Failed_HostUnreachable_DestinationUnreachable")]
    [TestCase(0x06, 97, TestName = "Failed_TimedOut_DestinationUnreachable")]
    [TestCase(0x02, 32, TestName = "Failed_NotAllowed_NotAuthorized")]
    [TestCase(0x03, 65, TestName = "Failed_NetworkUnreachable_NetworkFailure")]
    [TestCase(0x01, 65, TestName = "Failed_GeneralFailure_NetworkFailure")]
    public void Failed_UpstreamFailure_MatchingErrorTlv(int socksReply, int convertError) =>
        Assert.That(new ConvertHandshake().Failed((SocksReply)socksReply), Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, (byte)convertError, 0 }));

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
                // The value byte is zero but for the two codes that give it a meaning (the version, the option kind).
                Socks5Step.Close => reply is [1, 2, 0x22, 0x63, 30, 1, var code, var value] && Enum.IsDefined((ConvertError)code)
                    && (value == 0 || code is (byte)ConvertError.UnsupportedVersion or (byte)ConvertError.UnsupportedTcpOption),
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
