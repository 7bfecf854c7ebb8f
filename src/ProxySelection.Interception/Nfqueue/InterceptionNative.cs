using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxySelection.Interception.Nfqueue;

internal static unsafe partial class InterceptionNative
{
    public const int SockRaw = 3;
    public const int SockCloexec = 0x80000;
    public const int SolSocket = 1;
    public const int SoRcvbuf = 8;
    public const int SoRcvbufForce = 33;
    public const int MsgDontwait = 0x40;
    public const int MsgTrunc = 0x20;
    public const short PollIn = 0x1;
    public const int EIntr = 4;
    public const int EAgain = 11;
    public const int ENoBufs = 105;

    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrNl
    {
        public ushort Family;
        public ushort Pad;
        public uint PortId;
        public uint Groups;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
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
    public struct MMsgHdr
    {
        public MsgHdr Header;
        public uint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int bind(int fd, SockaddrNl* address, int length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int getsockname(int fd, SockaddrNl* address, int* length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int setsockopt(int fd, int level, int name, void* value, int length);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint send(int fd, void* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int recvmmsg(int fd, MMsgHdr* messages, uint count, int flags, void* timeout);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int gettid();

    [LibraryImport("libc", SetLastError = true)]
    public static partial int setpriority(int which, int who, int priority);

    [LibraryImport("libc")]
    public static partial int malloc_trim(nuint pad);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int sched_setscheduler(int pid, int policy, int* param);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    public static string Describe(int errno) => $"errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)})";
}

/// <summary>Owns a netlink socket descriptor; closing it also unbinds its queues in the kernel.</summary>
internal sealed class NetlinkSocketHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public NetlinkSocketHandle(int fd)
        : base(ownsHandle: true) => SetHandle(fd);

    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => InterceptionNative.close((int)handle) == 0;
}
