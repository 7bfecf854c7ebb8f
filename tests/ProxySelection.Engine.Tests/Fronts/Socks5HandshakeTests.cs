using System.Net;
using System.Net.Sockets;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Engine;
using ProxySelection.Engine.Fronts;
using ProxySelection.Relay;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Engine.Tests.Fronts;

/// <summary>The SOCKS5 server handshake (RFC 1928, RFC 1929) as a pure state machine.</summary>
public sealed class Socks5HandshakeTests
{
    private static readonly byte[] NoAuthGreeting = [5, 1, 0];
    private static readonly byte[] PasswordGreeting = [5, 2, 0, 2];
    private static readonly byte[] ConnectV4 = [5, 1, 0, 1, 198, 18, 3, 2, 0, 80];

    private static SocksCredentials Users()
    {
        var users = new SocksCredentials();
        users.Add("alice", "wonderland");
        return users;
    }

    private static byte[] Auth(string user, string password)
    {
        var u = Encoding.UTF8.GetBytes(user);
        var p = Encoding.UTF8.GetBytes(password);
        return [1, (byte)u.Length, .. u, (byte)p.Length, .. p];
    }

    private static byte[] ConnectDomain(string name, ushort port)
    {
        var n = Encoding.ASCII.GetBytes(name);
        return [5, 1, 0, 3, (byte)n.Length, .. n, (byte)(port >> 8), (byte)port];
    }

    /// <summary>Feeds <paramref name="input"/> as a client would, collecting the replies until the handshake waits or ends.</summary>
    private static (Socks5Step Last, List<byte[]> Replies, int Left) Drive(Socks5Handshake handshake, byte[] input)
    {
        var replies = new List<byte[]>();
        int offset = 0;
        while (true)
        {
            var step = handshake.Advance(input.AsSpan(offset), out int consumed, out var reply);
            offset += consumed;
            if (reply.Length > 0)
            {
                replies.Add(reply);
            }

            if (step != Socks5Step.Send)
            {
                return (step, replies, input.Length - offset);
            }
        }
    }

    [Test]
    public void Greeting_NoAuthOffered_SelectsNoAuthAndWaitsForRequest()
    {
        var handshake = new Socks5Handshake(null);
        var (last, replies, _) = Drive(handshake, NoAuthGreeting);
        Assert.Multiple(() =>
        {
            Assert.That(replies, Is.EqualTo(new[] { new byte[] { 5, 0 } }));
            Assert.That(last, Is.EqualTo(Socks5Step.NeedMore));
            Assert.That(handshake.State, Is.EqualTo(Socks5State.Request));
        });
    }

    [TestCase(new byte[] { 5, 1, 2 }, TestName = "Greeting_OnlyPasswordOfferedWithoutUsers_NoAcceptableMethod")]
    [TestCase(new byte[] { 4, 1, 0 }, TestName = "Greeting_Socks4_NoAcceptableMethod")]
    [TestCase(new byte[] { 5, 0 }, TestName = "Greeting_NoMethods_NoAcceptableMethod")]
    public void Greeting_Unacceptable_RepliesNoAcceptableMethodAndCloses(byte[] greeting)
    {
        var handshake = new Socks5Handshake(null);
        var (last, replies, _) = Drive(handshake, greeting);
        Assert.Multiple(() =>
        {
            Assert.That(last, Is.EqualTo(Socks5Step.Close));
            Assert.That(replies, Is.EqualTo(new[] { new byte[] { 5, 0xFF } }));
            Assert.That(handshake.State, Is.EqualTo(Socks5State.Closed));
        });
    }

    [Test]
    public void Greeting_UsersConfiguredButOnlyNoAuthOffered_NoAcceptableMethod()
    {
        var (last, replies, _) = Drive(new Socks5Handshake(Users()), NoAuthGreeting);
        Assert.That((last, replies[0]), Is.EqualTo((Socks5Step.Close, new byte[] { 5, 0xFF })));
    }

    [Test]
    public void Authentication_RightPassword_SucceedsThenConnects()
    {
        var handshake = new Socks5Handshake(Users());
        var (last, replies, _) = Drive(handshake, [.. PasswordGreeting, .. Auth("alice", "wonderland"), .. ConnectV4]);
        Assert.Multiple(() =>
        {
            Assert.That(replies, Is.EqualTo(new[] { new byte[] { 5, 2 }, new byte[] { 1, 0 } }));
            Assert.That(last, Is.EqualTo(Socks5Step.Connect));
            Assert.That(handshake.User, Is.EqualTo("alice"));
            Assert.That(handshake.Target, Is.EqualTo(new Socks5Target(IPAddress.Parse("198.18.3.2"), null, 80)));
        });
    }

    [TestCase("alice", "looking-glass", TestName = "Authentication_WrongPassword_FailureStatusAndClose")]
    [TestCase("bob", "wonderland", TestName = "Authentication_UnknownUser_FailureStatusAndClose")]
    [TestCase("", "", TestName = "Authentication_EmptyNameAndPassword_FailureStatusAndClose")]
    public void Authentication_Refused_FailureStatusAndClose(string user, string password)
    {
        var handshake = new Socks5Handshake(Users());
        var (last, replies, _) = Drive(handshake, [.. PasswordGreeting, .. Auth(user, password), .. ConnectV4]);
        Assert.Multiple(() =>
        {
            Assert.That(replies, Is.EqualTo(new[] { new byte[] { 5, 2 }, new byte[] { 1, 1 } }));
            Assert.That(last, Is.EqualTo(Socks5Step.Close));
            Assert.That(handshake.User, Is.Null);
        });
    }

    [Test]
    public void Authentication_WrongSubnegotiationVersion_FailureStatusAndClose()
    {
        var (last, replies, _) = Drive(new Socks5Handshake(Users()), [.. PasswordGreeting, 5, 1, (byte)'a', 1, (byte)'b']);
        Assert.That((last, replies[^1]), Is.EqualTo((Socks5Step.Close, new byte[] { 1, 1 })));
    }

    [Test]
    public void Request_ConnectIPv4_TargetIsTheAddress()
    {
        var handshake = new Socks5Handshake(null);
        var (last, _, left) = Drive(handshake, [.. NoAuthGreeting, .. ConnectV4]);
        Assert.That((last, left, handshake.Target), Is.EqualTo((Socks5Step.Connect, 0, new Socks5Target(IPAddress.Parse("198.18.3.2"), null, 80))));
    }

    [Test]
    public void Request_ConnectIPv6_TargetIsTheAddress()
    {
        var address = IPAddress.Parse("2001:db8:3::2");
        var handshake = new Socks5Handshake(null);
        var (last, _, _) = Drive(handshake, [.. NoAuthGreeting, 5, 1, 0, 4, .. address.GetAddressBytes(), 0x1F, 0x90]);
        Assert.That((last, handshake.Target), Is.EqualTo((Socks5Step.Connect, new Socks5Target(address, null, 8080))));
    }

    [Test]
    public void Request_ConnectDomain_TargetIsTheName()
    {
        var handshake = new Socks5Handshake(null);
        var (last, _, _) = Drive(handshake, [.. NoAuthGreeting, .. ConnectDomain("server.test", 443)]);
        Assert.Multiple(() =>
        {
            Assert.That((last, handshake.Target), Is.EqualTo((Socks5Step.Connect, new Socks5Target(null, "server.test", 443))));
            Assert.That(handshake.Target.ToString(), Is.EqualTo("server.test:443"));
        });
    }

    [Test]
    public void Request_DomainHoldingAnIPv6Literal_TargetIsTheAddress()
    {
        var handshake = new Socks5Handshake(null);
        Drive(handshake, [.. NoAuthGreeting, .. ConnectDomain("2001:db8:3::2", 80)]);
        Assert.That(handshake.Target, Is.EqualTo(new Socks5Target(IPAddress.Parse("2001:db8:3::2"), null, 80)));
    }

    [Test]
    public void Request_BytesBehindTheRequest_LeftForTheServer()
    {
        var (last, _, left) = Drive(new Socks5Handshake(null), [.. NoAuthGreeting, .. ConnectV4, .. "GET /"u8]);
        Assert.That((last, left), Is.EqualTo((Socks5Step.Connect, 5)));
    }

    /// <summary>A malformed or unsupported request, and the RFC 1928 §6 code it must get.</summary>
    private static readonly object[] RefusedRequests =
    [
        new object[] { new byte[] { 5, 2, 0, 1, 198, 18, 3, 2, 0, 80 }, (byte)SocksReply.CommandNotSupported, "BIND" },
        new object[] { new byte[] { 5, 3, 0, 1, 198, 18, 3, 2, 0, 80 }, (byte)SocksReply.CommandNotSupported, "UDP ASSOCIATE" },
        new object[] { new byte[] { 5, 9, 0, 1 }, (byte)SocksReply.CommandNotSupported, "unknown command" },
        new object[] { new byte[] { 5, 1, 0, 2 }, (byte)SocksReply.AddressTypeNotSupported, "address type 2" },
        new object[] { new byte[] { 5, 1, 0, 0xFF }, (byte)SocksReply.AddressTypeNotSupported, "address type 255" },
        new object[] { new byte[] { 4, 1, 0, 1, 198, 18, 3, 2, 0, 80 }, (byte)SocksReply.GeneralFailure, "version 4 request" },
        new object[] { new byte[] { 5, 1, 7, 1, 198, 18, 3, 2, 0, 80 }, (byte)SocksReply.GeneralFailure, "reserved byte set" },
        new object[] { new byte[] { 5, 1, 0, 1, 198, 18, 3, 2, 0, 0 }, (byte)SocksReply.GeneralFailure, "port 0" },
        new object[] { new byte[] { 5, 1, 0, 3, 0, 0, 80 }, (byte)SocksReply.HostUnreachable, "empty name" },
        new object[] { new byte[] { 5, 1, 0, 3, 3, (byte)'a', (byte)' ', (byte)'b', 0, 80 }, (byte)SocksReply.HostUnreachable, "space in the name" },
        new object[] { new byte[] { 5, 1, 0, 3, 4, (byte)'a', (byte)'.', (byte)'.', (byte)'b', 0, 80 }, (byte)SocksReply.HostUnreachable, "empty label" },
    ];

    [TestCaseSource(nameof(RefusedRequests))]
    public void Request_MalformedOrUnsupported_ReplyCodeAndClose(byte[] request, byte code, string what)
    {
        var handshake = new Socks5Handshake(null);
        var (last, replies, _) = Drive(handshake, [.. NoAuthGreeting, .. request]);
        Assert.Multiple(() =>
        {
            Assert.That(last, Is.EqualTo(Socks5Step.Close), what);
            Assert.That(replies[^1], Is.EqualTo(Socks5Handshake.Reply((SocksReply)code)), what);
            Assert.That(replies[^1][1], Is.EqualTo(code), what);
        });
    }

    [Test]
    public void Advance_OneByteAtATime_SameOutcomeAsAtOnce()
    {
        byte[] input = [.. PasswordGreeting, .. Auth("alice", "wonderland"), .. ConnectDomain("server.test", 80)];
        var handshake = new Socks5Handshake(Users());
        var replies = new List<byte[]>();
        var buffer = new List<byte>();
        var step = Socks5Step.NeedMore;
        foreach (byte b in input)
        {
            buffer.Add(b);
            do
            {
                step = handshake.Advance(buffer.ToArray(), out int consumed, out var reply);
                buffer.RemoveRange(0, consumed);
                if (reply.Length > 0)
                {
                    replies.Add(reply);
                }
            }
            while (step == Socks5Step.Send);
        }

        Assert.Multiple(() =>
        {
            Assert.That(step, Is.EqualTo(Socks5Step.Connect));
            Assert.That(replies, Is.EqualTo(new[] { new byte[] { 5, 2 }, new byte[] { 1, 0 } }));
            Assert.That(handshake.Target.Host, Is.EqualTo("server.test"));
        });
    }

    [Test]
    public void Advance_AfterClose_StaysClosedAndConsumesNothing()
    {
        var handshake = new Socks5Handshake(null);
        Drive(handshake, [4, 1, 0]);
        var step = handshake.Advance(NoAuthGreeting, out int consumed, out var reply);
        Assert.That((step, consumed, reply.Length), Is.EqualTo((Socks5Step.Close, 0, 0)));
    }

    [Test]
    public void Reply_SucceededIPv4_CarriesBoundAddressAndPort()
    {
        var reply = Socks5Handshake.Reply(SocksReply.Succeeded, new IPEndPoint(IPAddress.Parse("198.18.3.1"), 40_000));
        Assert.That(reply, Is.EqualTo(new byte[] { 5, 0, 0, 1, 198, 18, 3, 1, 0x9C, 0x40 }));
    }

    [Test]
    public void Reply_IPv4MappedBound_WrittenAsIPv4()
    {
        var reply = Socks5Handshake.Reply(SocksReply.Succeeded, new IPEndPoint(IPAddress.Parse("::ffff:198.18.3.1"), 1));
        Assert.That(reply, Is.EqualTo(new byte[] { 5, 0, 0, 1, 198, 18, 3, 1, 0, 1 }));
    }

    [Test]
    public void Reply_SucceededIPv6_TwentyTwoBytes()
    {
        var reply = Socks5Handshake.Reply(SocksReply.Succeeded, new IPEndPoint(IPAddress.Parse("2001:db8:3::1"), 80));
        Assert.Multiple(() =>
        {
            Assert.That(reply, Has.Length.EqualTo(22));
            Assert.That(reply[3], Is.EqualTo(Socks5Handshake.AddressIPv6));
            Assert.That(reply[^2..], Is.EqualTo(new byte[] { 0, 80 }));
        });
    }

    [Test]
    public void Reply_Failure_ZeroAddress()
    {
        Assert.That(Socks5Handshake.Reply(SocksReply.ConnectionRefused), Is.EqualTo(new byte[] { 5, 5, 0, 1, 0, 0, 0, 0, 0, 0 }));
    }

    [TestCase(UpstreamConnectStatus.Refused, SocketError.ConnectionRefused, 0x05)]
    [TestCase(UpstreamConnectStatus.TimedOut, SocketError.TimedOut, 0x06)]
    [TestCase(UpstreamConnectStatus.Unreachable, SocketError.HostUnreachable, 0x04)]
    [TestCase(UpstreamConnectStatus.Unreachable, SocketError.NetworkUnreachable, 0x03)]
    [TestCase(UpstreamConnectStatus.CircuitOpen, SocketError.Success, 0x04)]
    [TestCase(UpstreamConnectStatus.Failed, SocketError.AccessDenied, 0x01)]
    [TestCase(UpstreamConnectStatus.Cancelled, SocketError.OperationAborted, 0x01)]
    public void ReplyFor_ConnectFailure_MatchingRfcCode(UpstreamConnectStatus status, SocketError error, int expected) =>
        Assert.That((int)HostConfiguredFront.ReplyFor(new UpstreamConnectResult(status, null, error)), Is.EqualTo(expected));

    [TestCase("198.18.3.2", true)]
    [TestCase("2001:db8:3::2", true)]
    [TestCase("127.0.0.1", false)]
    [TestCase("::1", false)]
    [TestCase("0.0.0.0", false)]
    [TestCase("255.255.255.255", false)]
    [TestCase("224.0.0.1", false)]
    [TestCase("ff02::1", false)]
    public void IsAllowedDestination_LoopbackUnspecifiedBroadcastMulticastRefused(string address, bool allowed) =>
        Assert.That(HostConfiguredFront.IsAllowedDestination(IPAddress.Parse(address)), Is.EqualTo(allowed));

    // Any bytes, in any state, end in a defined step: never an exception, never a reply outside the RFCs' forms.
    [FsProperty(MaxTest = 2000)]
    public Property Advance_AnyBytesFromStart_DefinedStepOrReply() =>
        Prop.ForAll(Inputs([]).ToArbitrary(), input => Defined(new Socks5Handshake(null), input));

    [FsProperty(MaxTest = 2000)]
    public Property Advance_AnyRequestAfterNoAuth_DefinedStepOrReply() =>
        Prop.ForAll(Inputs(NoAuthGreeting).ToArbitrary(), input => Defined(new Socks5Handshake(null), input));

    [FsProperty(MaxTest = 2000)]
    public Property Advance_AnyAuthenticationAfterGreeting_DefinedStepOrReply() =>
        Prop.ForAll(Inputs(PasswordGreeting).ToArbitrary(), input => Defined(new Socks5Handshake(Users()), input));

    [FsProperty(MaxTest = 2000)]
    public Property Advance_AnyRequestAfterAuthentication_DefinedStepOrReply() =>
        Prop.ForAll(Inputs([.. PasswordGreeting, .. Auth("alice", "wonderland")]).ToArbitrary(), input => Defined(new Socks5Handshake(Users()), input));

    /// <summary>A valid prefix, then random bytes biased toward the header values the parser branches on.</summary>
    private static Gen<byte[]> Inputs(byte[] prefix)
    {
        var interesting = Gen.Elements<byte>(0, 1, 2, 3, 4, 5, 0xFF);
        var any = Gen.Choose(0, 255).Select(i => (byte)i);
        var b = Gen.Frequency((1, interesting), (1, any));
        return b.ArrayOf().Select(tail => (byte[])[.. prefix, .. tail]);
    }

    private static bool Defined(Socks5Handshake handshake, byte[] input)
    {
        int offset = 0;
        while (true)
        {
            var step = handshake.Advance(input.AsSpan(offset), out int consumed, out var reply);
            if (consumed < 0 || consumed > input.Length - offset)
            {
                return false;
            }

            offset += consumed;
            switch (step)
            {
                case Socks5Step.NeedMore:
                    return consumed == 0 && reply.Length == 0 && input.Length - offset < Socks5Handshake.MaxMessageLength + 3;
                case Socks5Step.Send:
                    if (!(reply is [5, 0] or [5, 2] or [1, 0]))
                    {
                        return false;
                    }

                    continue;
                case Socks5Step.Connect:
                    return handshake.State == Socks5State.Connect && handshake.Target.Port != 0
                        && (handshake.Target.Address is not null || handshake.Target.Host is { Length: > 0 });
                case Socks5Step.Close:
                    return handshake.State == Socks5State.Closed
                        && (reply is [5, 0xFF] or [1, 1] || (reply is [5, >= 1 and <= 8, 0, 1, 0, 0, 0, 0, 0, 0]));
                default:
                    return false;
            }
        }
    }
}
