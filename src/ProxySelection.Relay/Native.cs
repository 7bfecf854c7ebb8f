using System.Runtime.InteropServices;

namespace ProxySelection.Relay;

/// <summary>libc entry points and kernel constants the BCL does not expose.</summary>
internal static partial class Native
{
    // include/linux/socket.h, include/uapi/linux/in.h
    public const int SockStream = 1;
    public const int SockCloexec = 0x80000; // O_CLOEXEC on x86-64 and arm64
    public const int IpprotoMptcp = 262;

    public const int SolSocket = 1;
    public const int SoProtocol = 38;
    public const int SolIp = 0;
    public const int SolIpv6 = 41;
    public const int SolMptcp = 284;

    public const int IpTransparent = 19;
    public const int IpBindAddressNoPort = 24;
    public const int Ipv6Transparent = 75;

    // include/uapi/linux/mptcp.h
    public const int MptcpInfo = 1;
    public const int MptcpTcpInfo = 2;
    public const int MptcpSubflowAddrs = 3;

    // errno
    public const int EnoProtoOpt = 92;
    public const int EProtoNoSupport = 93;
    public const int EOpNotSupp = 95;

    public const int AfInet = 2;
    public const int AfInet6 = 10;

    public const int MsgDontwait = 0x40;
    public const int EAgain = 11;
    public const int EIntr = 4;

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    public const int ONonblock = 0x800;
    public const int OCloexec = 0x80000;
    public const int FSetPipeSize = 1031;
    public const uint SpliceFMove = 1;
    public const uint SpliceFNonblock = 2;
    public const uint SpliceFMore = 4;

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    public static unsafe partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    public static unsafe partial nint Splice(nint fdIn, long* offIn, nint fdOut, long* offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static unsafe partial nint Read(int fd, byte* buffer, nuint length);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    public static unsafe partial nint Recv(nint fd, byte* buffer, nuint length, int flags);
}
