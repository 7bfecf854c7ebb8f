using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.Relay;

/// <summary>
/// The ICMP (or ICMPv6) error that ended a connect: <c>ee_type</c> and <c>ee_code</c> of the kernel's
/// <c>sock_extended_err</c> (linux/errqueue.h). RFC 8803's Destination Unreachable echoes <see cref="Code"/>.
/// </summary>
public readonly record struct IcmpError(bool V6, byte Type, byte Code)
{
    /// <summary>ICMP type 3 or ICMPv6 type 1: Destination Unreachable, whose code says why.</summary>
    public bool IsDestinationUnreachable => V6 ? Type == 1 : Type == 3;

    public override string ToString() => $"{(V6 ? "icmp6" : "icmp")} type {Type} code {Code}";
}

/// <summary>
/// IP_RECVERR / IPV6_RECVERR on a connecting socket, and the error queue read after the connect failed. Set for the
/// connect only: on an established TCP socket IP_RECVERR turns soft ICMP errors into hard ones (tcp_v4_err), so it is
/// cleared again once the connect succeeded. An MPTCP socket refuses the option (not in mptcp_supported_sockopt): no
/// ICMP detail there.
/// </summary>
internal static partial class IcmpErrorQueue
{
    // include/uapi/linux/in.h, in6.h, errqueue.h, socket.h
    private const int IpRecvErr = 11;
    private const int Ipv6RecvErr = 25;
    private const int MsgErrQueue = 0x2000;
    private const byte OriginIcmp = 2;
    private const byte OriginIcmp6 = 3;

    /// <summary>Best effort: false when the socket does not take the option.</summary>
    public static bool TryEnable(Socket socket) => TrySet(socket, true);

    public static void Disable(Socket socket) => TrySet(socket, false);

    private static bool TrySet(Socket socket, bool on)
    {
        try
        {
            bool v6 = socket.AddressFamily == AddressFamily.InterNetworkV6;
            socket.SetRawSocketOption(v6 ? Native.SolIpv6 : Native.SolIp, v6 ? Ipv6RecvErr : IpRecvErr, BitConverter.GetBytes(on ? 1 : 0));
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>The first ICMP entry of the socket's error queue, if any (non-blocking).</summary>
    public static unsafe IcmpError? TryRead(Socket socket)
    {
        nint fd;
        try
        {
            fd = socket.SafeHandle.DangerousGetHandle();
        }
        catch (ObjectDisposedException)
        {
            return null;
        }

        // Control room for one cmsghdr and a sock_extended_err with its offender address (sockaddr_in6).
        byte* control = stackalloc byte[256];
        byte* data = stackalloc byte[64];
        var iov = new IoVec { Base = data, Length = 64 };
        var message = new MessageHeader { Iov = &iov, IovLength = 1, Control = control, ControlLength = 256 };
        for (int entries = 0; entries < 4; entries++)
        {
            message.ControlLength = 256;
            if (RecvMsg(fd, &message, MsgErrQueue | Native.MsgDontwait) < 0)
            {
                return null;
            }

            for (byte* at = control; at + sizeof(ControlHeader) <= control + (int)message.ControlLength;)
            {
                var header = (ControlHeader*)at;
                if (header->Length < (nuint)sizeof(ControlHeader))
                {
                    break;
                }

                bool recvErr = (header->Level == Native.SolIp && header->Type == IpRecvErr) || (header->Level == Native.SolIpv6 && header->Type == Ipv6RecvErr);
                if (recvErr && header->Length >= (nuint)(sizeof(ControlHeader) + 8))
                {
                    // struct sock_extended_err { u32 ee_errno; u8 ee_origin; u8 ee_type; u8 ee_code; ... }
                    byte* error = at + sizeof(ControlHeader);
                    if (error[4] is OriginIcmp or OriginIcmp6)
                    {
                        return new IcmpError(error[4] == OriginIcmp6, error[5], error[6]);
                    }
                }

                at += (int)((header->Length + 7) & ~(nuint)7);
            }
        }

        return null;
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ControlHeader
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    private static unsafe partial nint RecvMsg(nint fd, MessageHeader* message, int flags);
}
