using System.Net;
using ProxySelection.Interception.Netlink;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Interception.Tests.Netlink;

/// <summary>
/// The <c>mptcp_pm</c> generic-netlink codec on datagrams captured from Linux 6.18 (a namespace with a loopback MPTCP
/// connection and a second subflow endpoint on 127.0.0.2; the family had id 28 and its event group id 9 there).
/// </summary>
[TestFixture]
public sealed class MptcpPmCodecTests
{
    private const ushort Family = 28;

    /// <summary>CTRL_CMD_NEWFAMILY answering GETFAMILY mptcp_pm: id 28, ops, groups mptcp_pm_cmds (8) and mptcp_pm_events (9).</summary>
    private const string FamilyReply =
        "68010000100000000100000011340000010200000d0002006d707463705f706d00000000060001001c000000080003000100000008000400000000000800050000000000" +
        "e0000600140001000800010001000000080002001a000000140002000800010002000000080002001a000000140003000800010003000000080002000e0000001400040008" +
        "00010004000000080002001a000000140005000800010005000000080002001a000000140006000800010006000000080002000a000000140007000800010007000000080002" +
        "001a000000140008000800010008000000080002001a000000140009000800010009000000080002001a00000014000a00080001000a000000080002001a00000014000b0008" +
        "0001000b000000080002001a00000044000700200001000800020008000000120001006d707463705f706d5f636d6473000000200002000800020009000000140001006d70" +
        "7463705f706d5f6576656e747300";

    /// <summary>MPTCP_EVENT_CREATED of the client side: token b8ba3949, 127.0.0.1:60514 → 127.0.0.1:8080.</summary>
    private const string Created =
        "540000001c000000000000000000000001010000080001004939bab80600020002000000080005007f000001080007007f00000106000900ec62000006000a001f90000005000300000000000500040000000000";

    /// <summary>MPTCP_EVENT_ESTABLISHED of the server side (server-side flag, flags attribute 13 skipped).</summary>
    private const string EstablishedServer =
        "640000001c00000000000000000000000201000008000100864b8e84050012000100000006000d00020000000600020002000000080005007f000001080007007f000001060009001f90000006000a00ec62000005000300000000000500040000000000";

    /// <summary>MPTCP_EVENT_SUB_ESTABLISHED of the client: 127.0.0.2:51405 → 127.0.0.1:8080, local id 1.</summary>
    private const string SubflowEstablished =
        "640000001c00000000000000000000000a010000080001004939bab80600020002000000080005007f000002080007007f00000106000900c8cd000006000a001f9000000500030001000000050004000000000005000b000000000008000f0001000000";

    /// <summary>MPTCP_EVENT_SUB_CLOSED of the server's own join attempt, refused (error 111).</summary>
    private const string SubflowClosedRefused =
        "6c0000001c00000000000000000000000b01000008000100864b8e840600020002000000080005007f000002080007007f0000010600090099f3000006000a00ec6200000500030001000000050004000000000005000b000000000008000f000100000005000c006f000000";

    private const string Closed = "1c0000001c000000000000000000000003010000080001004939bab8";

    private const string ListenerCreated = "2c0000001c00000000000000000000000f0100000600020002000000060009001f900000080005007f000001";

    [Test]
    public void TryReadFamily_CapturedControllerAnswer_FamilyAndEventsGroup()
    {
        var status = MptcpPmCodec.TryReadFamily(Message(FamilyReply), out ushort family, out uint group);

        Assert.That(status, Is.EqualTo(NetlinkStatus.Ok));
        Assert.That(family, Is.EqualTo(Family));
        Assert.That(group, Is.EqualTo(9u));
    }

    [Test]
    public void WriteGetFamily_Request_ControllerCommandWithFamilyName()
    {
        var buffer = new byte[64];

        int length = MptcpPmCodec.WriteGetFamily(buffer, sequence: 1);

        byte[] expected =
        [
            36, 0, 0, 0, 0x10, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: GENL_ID_CTRL, NLM_F_REQUEST, seq 1
            3, 1, 0, 0, // genlmsghdr: CTRL_CMD_GETFAMILY, version 1
            13, 0, 2, 0, .. "mptcp_pm"u8, 0, 0, 0, 0, // CTRL_ATTR_FAMILY_NAME "mptcp_pm\0", padded
        ];
        Assert.That(buffer[..length], Is.EqualTo(expected));
    }

    [Test]
    public void TryReadEvent_Created_TokenAndBothEnds()
    {
        var e = Read(Created);

        Assert.That(e.Type, Is.EqualTo(MptcpPmEventType.Created));
        Assert.That(e.Token, Is.EqualTo(0xb8ba3949u));
        Assert.That(e.Source, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 60514)));
        Assert.That(e.Destination, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 8080)));
        Assert.That(e.ServerSide, Is.False);
    }

    [Test]
    public void TryReadEvent_EstablishedServerSide_ServerFlagAndUnknownAttributeSkipped()
    {
        var e = Read(EstablishedServer);

        Assert.That(e.Type, Is.EqualTo(MptcpPmEventType.Established));
        Assert.That(e.Token, Is.EqualTo(0x848e4b86u));
        Assert.That(e.ServerSide, Is.True);
        Assert.That(e.Source, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 8080)));
    }

    [Test]
    public void TryReadEvent_SubflowEstablished_SecondAddressAndIds()
    {
        var e = Read(SubflowEstablished);

        Assert.That(e.Type, Is.EqualTo(MptcpPmEventType.SubflowEstablished));
        Assert.That(e.Token, Is.EqualTo(0xb8ba3949u));
        Assert.That(e.Source, Is.EqualTo(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 51405)));
        Assert.That(e.Destination, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 8080)));
        Assert.That((e.LocalId, e.RemoteId, e.Backup), Is.EqualTo(((byte)1, (byte)0, false)));
    }

    [Test]
    public void TryReadEvent_SubflowClosedRefused_ErrorCarried()
    {
        var e = Read(SubflowClosedRefused);

        Assert.That(e.Type, Is.EqualTo(MptcpPmEventType.SubflowClosed));
        Assert.That(e.Error, Is.EqualTo(111));
    }

    [Test]
    public void TryReadEvent_Closed_TokenOnly()
    {
        var e = Read(Closed);

        Assert.That(e.Type, Is.EqualTo(MptcpPmEventType.Closed));
        Assert.That(e.Token, Is.EqualTo(0xb8ba3949u));
        Assert.That(e.Source, Is.Null);
    }

    [Test]
    public void TryReadEvent_ListenerCreated_NoTokenNeeded()
    {
        var e = Read(ListenerCreated);

        Assert.That(e.Type, Is.EqualTo(MptcpPmEventType.ListenerCreated));
        Assert.That(e.Source, Is.EqualTo(new IPEndPoint(IPAddress.Loopback, 8080)));
    }

    [Test]
    public void TryReadEvent_OtherFamily_UnexpectedType()
    {
        var status = MptcpPmCodec.TryReadEvent(Message(Created), familyId: 29, out var e);

        Assert.That(status, Is.EqualTo(NetlinkStatus.UnexpectedType));
        Assert.That(e, Is.Null);
    }

    [Test]
    public void TryReadEvent_NoGenericHeader_Truncated()
    {
        byte[] bytes = [18, 0, 0, 0, (byte)Family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];

        Assert.That(MptcpPmCodec.TryReadEvent(Message(bytes), Family, out _), Is.EqualTo(NetlinkStatus.Truncated));
    }

    [Test]
    public void TryReadEvent_TokenOfThreeBytes_BadAttributePayload()
    {
        // The Closed event with MPTCP_ATTR_TOKEN's nla_len cut from 8 to 7.
        var bytes = Convert.FromHexString(Closed);
        bytes[20] = 7;

        Assert.That(MptcpPmCodec.TryReadEvent(Message(bytes), Family, out _), Is.EqualTo(NetlinkStatus.BadAttributePayload));
    }

    [Test]
    public void TryReadEvent_AttributeLongerThanMessage_BadAttributeLength()
    {
        var bytes = Convert.FromHexString(Closed);
        bytes[20] = 40;

        Assert.That(MptcpPmCodec.TryReadEvent(Message(bytes), Family, out _), Is.EqualTo(NetlinkStatus.BadAttributeLength));
    }

    [Test]
    public void TryReadEvent_ConnectionEventWithoutToken_MissingAttribute()
    {
        // MPTCP_EVENT_CLOSED with its token attribute's type changed to an unknown one (99).
        var bytes = Convert.FromHexString(Closed);
        bytes[22] = 99;

        Assert.That(MptcpPmCodec.TryReadEvent(Message(bytes), Family, out _), Is.EqualTo(NetlinkStatus.MissingAttribute));
    }

    [Test]
    public void TryReadFamily_NoEventsGroup_MissingAttribute()
    {
        // Just the header and the family id attribute of the captured answer.
        var full = Convert.FromHexString(FamilyReply);
        byte[] bytes = [28, 0, 0, 0, .. full[4..20], .. full[36..44]];

        Assert.That(MptcpPmCodec.TryReadFamily(Message(bytes), out _, out _), Is.EqualTo(NetlinkStatus.MissingAttribute));
    }

    [FsProperty(MaxTest = 2000)]
    public void TryReadEvent_AnyTruncationOrCorruption_StatusNeverException(byte cut, byte position, byte value)
    {
        foreach (var hex in new[] { Created, EstablishedServer, SubflowEstablished, SubflowClosedRefused, Closed })
        {
            var bytes = Convert.FromHexString(hex);
            bytes[16 + (position % (bytes.Length - 16))] = value;
            int length = Math.Max(16, bytes.Length - (cut % (bytes.Length - 15)));
            var message = Message(bytes[..length]);

            var status = MptcpPmCodec.TryReadEvent(message, Family, out var e);

            Assert.That(status == NetlinkStatus.Ok, Is.EqualTo(e is not null));
        }
    }

    [FsProperty(MaxTest = 2000)]
    public void TryReadFamily_RandomPayload_StatusNeverException(byte[] payload)
    {
        var message = new NetlinkMessage(0x10, 0, 0, 0, payload);

        var status = MptcpPmCodec.TryReadFamily(message, out ushort family, out uint group);

        Assert.That(status != NetlinkStatus.Ok || (family != 0 && group != 0), Is.True);
    }

    private static MptcpPmEvent Read(string hex)
    {
        var status = MptcpPmCodec.TryReadEvent(Message(hex), Family, out var e);
        Assert.That(status, Is.EqualTo(NetlinkStatus.Ok));
        return e!;
    }

    private static NetlinkMessage Message(string hex) => Message(Convert.FromHexString(hex));

    private static NetlinkMessage Message(byte[] bytes)
    {
        // nlmsg_len as the datagram says, clipped to what is there (a truncated message keeps its header).
        var reader = new NetlinkMessageReader(bytes);
        if (reader.TryReadNext(out var message))
        {
            return message;
        }

        return new NetlinkMessage(BitConverter.ToUInt16(bytes, 4), 0, 0, 0, bytes.AsSpan(16));
    }
}
