using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;

namespace ProxySelection.Interception.Netlink;

/// <summary>enum mptcp_event_type (include/uapi/linux/mptcp_pm.h, generated from mptcp_pm.yaml).</summary>
public enum MptcpPmEventType : byte
{
    Unspecified = 0,
    Created = 1,
    Established = 2,
    Closed = 3,
    Announced = 6,
    Removed = 7,
    SubflowEstablished = 10,
    SubflowClosed = 11,
    SubflowPriority = 13,
    ListenerCreated = 15,
    ListenerClosed = 16,
}

/// <summary>
/// One MPTCP path-manager event. <see cref="Token"/> is the local token of the connection, the one MPTCP_INFO
/// reports (mptcpi_token). Source is the local end, Destination the remote one, as the kernel names them
/// (saddr/daddr of the subflow). Fields an event type does not carry are null or zero.
/// </summary>
public sealed record MptcpPmEvent
{
    public required MptcpPmEventType Type { get; init; }

    public uint Token { get; init; }

    public IPEndPoint? Source { get; init; }

    public IPEndPoint? Destination { get; init; }

    public byte LocalId { get; init; }

    public byte RemoteId { get; init; }

    public bool Backup { get; init; }

    /// <summary>MPTCP_ATTR_ERROR: the socket error that closed a subflow (e.g. 111 ECONNREFUSED), 0 for none.</summary>
    public byte Error { get; init; }

    /// <summary>MPTCP_ATTR_SERVER_SIDE: the connection was accepted by a listener here.</summary>
    public bool ServerSide { get; init; }
}

/// <summary>
/// The generic-netlink side of <c>mptcp_pm</c>: resolving the family and its event group through the controller,
/// and parsing events. Pure; malformed input gives a <see cref="NetlinkStatus"/>, never an exception.
/// </summary>
public static class MptcpPmCodec
{
    public const string FamilyName = "mptcp_pm";
    public const string EventsGroupName = "mptcp_pm_events";

    /// <summary>Generic netlink header (struct genlmsghdr: cmd, version, reserved).</summary>
    public const int GenlHeaderLength = 4;

    internal const int NetlinkGeneric = 16;
    internal const ushort GenlIdCtrl = 0x10;
    internal const byte CtrlCmdGetFamily = 3;
    internal const ushort CtrlAttrFamilyId = 1;
    internal const ushort CtrlAttrFamilyName = 2;
    internal const ushort CtrlAttrMcastGroups = 7;
    internal const ushort CtrlAttrMcastGroupName = 1;
    internal const ushort CtrlAttrMcastGroupId = 2;

    // enum mptcp_event_attr.
    private const ushort AttrToken = 1;
    private const ushort AttrFamily = 2;
    private const ushort AttrLocalId = 3;
    private const ushort AttrRemoteId = 4;
    private const ushort AttrSourceV4 = 5;
    private const ushort AttrSourceV6 = 6;
    private const ushort AttrDestinationV4 = 7;
    private const ushort AttrDestinationV6 = 8;
    private const ushort AttrSourcePort = 9;
    private const ushort AttrDestinationPort = 10;
    private const ushort AttrBackup = 11;
    private const ushort AttrError = 12;
    private const ushort AttrServerSide = 18;

    /// <summary>CTRL_CMD_GETFAMILY for <c>mptcp_pm</c>; the answer is read by <see cref="TryReadFamily"/>.</summary>
    public static int WriteGetFamily(Span<byte> buffer, uint sequence)
    {
        var w = new NetlinkWriter(buffer);
        w.BeginMessage(GenlIdCtrl, Netlink.FlagRequest, sequence);
        w.WriteGenlHeader(CtrlCmdGetFamily, 1);
        Span<byte> name = stackalloc byte[FamilyName.Length + 1];
        System.Text.Encoding.ASCII.GetBytes(FamilyName, name);
        name[^1] = 0;
        w.AddAttribute(CtrlAttrFamilyName, name);
        return w.EndMessage();
    }

    /// <summary>Reads the controller's answer: the family id and the id of its <c>mptcp_pm_events</c> group.</summary>
    public static NetlinkStatus TryReadFamily(in NetlinkMessage message, out ushort familyId, out uint eventsGroup)
    {
        familyId = 0;
        eventsGroup = 0;
        if (message.Type != GenlIdCtrl)
        {
            return NetlinkStatus.UnexpectedType;
        }

        if (message.Payload.Length < GenlHeaderLength)
        {
            return NetlinkStatus.Truncated;
        }

        var attributes = new NetlinkAttributeReader(message.Payload[GenlHeaderLength..]);
        while (attributes.TryReadNext(out var attribute))
        {
            if (attribute.Type == CtrlAttrFamilyId)
            {
                if (attribute.Payload.Length < 2)
                {
                    return NetlinkStatus.BadAttributePayload;
                }

                familyId = MemoryMarshal.Read<ushort>(attribute.Payload);
            }
            else if (attribute.Type == CtrlAttrMcastGroups)
            {
                var groups = new NetlinkAttributeReader(attribute.Payload);
                while (groups.TryReadNext(out var group))
                {
                    var status = ReadGroup(group.Payload, out bool isEvents, out uint id);
                    if (status != NetlinkStatus.Ok)
                    {
                        return status;
                    }

                    if (isEvents)
                    {
                        eventsGroup = id;
                    }
                }

                if (groups.Status != NetlinkStatus.Ok)
                {
                    return groups.Status;
                }
            }
        }

        if (attributes.Status != NetlinkStatus.Ok)
        {
            return attributes.Status;
        }

        return familyId == 0 || eventsGroup == 0 ? NetlinkStatus.MissingAttribute : NetlinkStatus.Ok;
    }

    private static NetlinkStatus ReadGroup(ReadOnlySpan<byte> group, out bool isEvents, out uint id)
    {
        isEvents = false;
        id = 0;
        var reader = new NetlinkAttributeReader(group);
        while (reader.TryReadNext(out var attribute))
        {
            if (attribute.Type == CtrlAttrMcastGroupName)
            {
                var name = attribute.Payload;
                int end = name.IndexOf((byte)0);
                isEvents = (end < 0 ? name : name[..end]).SequenceEqual("mptcp_pm_events"u8);
            }
            else if (attribute.Type == CtrlAttrMcastGroupId)
            {
                if (attribute.Payload.Length < 4)
                {
                    return NetlinkStatus.BadAttributePayload;
                }

                id = MemoryMarshal.Read<uint>(attribute.Payload);
            }
        }

        return reader.Status;
    }

    /// <summary>
    /// Parses one event message of family <paramref name="familyId"/>. Unknown attributes are skipped (newer kernels
    /// add some); an attribute of a known type with the wrong size, a missing token or a truncated message is an error.
    /// </summary>
    public static NetlinkStatus TryReadEvent(in NetlinkMessage message, ushort familyId, out MptcpPmEvent? mptcpEvent)
    {
        mptcpEvent = null;
        if (message.Type != familyId)
        {
            return NetlinkStatus.UnexpectedType;
        }

        if (message.Payload.Length < GenlHeaderLength)
        {
            return NetlinkStatus.Truncated;
        }

        var type = (MptcpPmEventType)message.Payload[0];
        uint? token = null;
        byte localId = 0, remoteId = 0, error = 0;
        bool backup = false, serverSide = false;
        IPAddress? source = null, destination = null;
        ushort sourcePort = 0, destinationPort = 0;
        var attributes = new NetlinkAttributeReader(message.Payload[GenlHeaderLength..]);
        while (attributes.TryReadNext(out var attribute))
        {
            var payload = attribute.Payload;
            switch (attribute.Type)
            {
                case AttrToken when payload.Length == 4:
                    token = MemoryMarshal.Read<uint>(payload);
                    break;
                case AttrFamily when payload.Length == 2:
                    break;
                case AttrLocalId when payload.Length == 1:
                    localId = payload[0];
                    break;
                case AttrRemoteId when payload.Length == 1:
                    remoteId = payload[0];
                    break;
                case AttrSourceV4 when payload.Length == 4:
                    source = new IPAddress(payload);
                    break;
                case AttrSourceV6 when payload.Length == 16:
                    source = new IPAddress(payload);
                    break;
                case AttrDestinationV4 when payload.Length == 4:
                    destination = new IPAddress(payload);
                    break;
                case AttrDestinationV6 when payload.Length == 16:
                    destination = new IPAddress(payload);
                    break;
                case AttrSourcePort when payload.Length == 2:
                    sourcePort = BinaryPrimitives.ReadUInt16BigEndian(payload);
                    break;
                case AttrDestinationPort when payload.Length == 2:
                    destinationPort = BinaryPrimitives.ReadUInt16BigEndian(payload);
                    break;
                case AttrBackup when payload.Length == 1:
                    backup = payload[0] != 0;
                    break;
                case AttrError when payload.Length == 1:
                    error = payload[0];
                    break;
                case AttrServerSide when payload.Length == 1:
                    serverSide = payload[0] != 0;
                    break;
                case >= AttrToken and <= AttrError:
                case AttrServerSide:
                    return NetlinkStatus.BadAttributePayload;
                default:
                    // Flags, timeout, interface index, reset reason and attributes of later kernels.
                    break;
            }
        }

        if (attributes.Status != NetlinkStatus.Ok)
        {
            return attributes.Status;
        }

        bool listenerEvent = type is MptcpPmEventType.ListenerCreated or MptcpPmEventType.ListenerClosed;
        if (token is null && !listenerEvent)
        {
            return NetlinkStatus.MissingAttribute;
        }

        mptcpEvent = new MptcpPmEvent
        {
            Type = type,
            Token = token ?? 0,
            Source = source is null ? null : new IPEndPoint(source, sourcePort),
            Destination = destination is null ? null : new IPEndPoint(destination, destinationPort),
            LocalId = localId,
            RemoteId = remoteId,
            Backup = backup,
            Error = error,
            ServerSide = serverSide,
        };
        return NetlinkStatus.Ok;
    }
}
