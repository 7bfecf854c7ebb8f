using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ProxySelection.Host.Control;

/// <summary>The few libc calls the control socket needs and .NET lacks: the file type without following a symlink, and umask.</summary>
internal static partial class ControlNative
{
    public const int SIfMt = 0xF000;
    public const int SIfSock = 0xC000;
    public const int SIfDir = 0x4000;
    public const int SIfLnk = 0xA000;

    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxMode = 0x2;
    private const int Enoent = 2;

    /// <summary>
    /// The mode (type and permission bits) of <paramref name="path"/> itself, a symlink not followed; null when
    /// nothing is there; <paramref name="error"/> set when it cannot be read.
    /// </summary>
    public static int? ModeOf(string path, out string error)
    {
        // struct statx is the same on every architecture: stx_mode is a little-endian (on our targets) u16 at 28.
        var buffer = new byte[256];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxMode, buffer) == 0)
        {
            error = "";
            return BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(28));
        }

        int errno = Marshal.GetLastPInvokeError();
        error = errno == Enoent ? "" : $"{path}: {Marshal.GetPInvokeErrorMessage(errno)}";
        return null;
    }

    /// <summary>The process and user at the other end of a unix socket (SO_PEERCRED), null when the kernel does not say.</summary>
    public static ControlPeer? PeerOf(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        const int SolSocket = 1, SoPeerCred = 17;
        Span<byte> credentials = stackalloc byte[12];
        try
        {
            // struct ucred { pid_t pid; uid_t uid; gid_t gid; }, native endianness.
            return socket.GetRawSocketOption(SolSocket, SoPeerCred, credentials) == credentials.Length
                ? new ControlPeer(MemoryMarshal.Read<int>(credentials), MemoryMarshal.Read<uint>(credentials[4..]))
                : null;
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <summary>umask(2): sets the process's file creation mask, returns the previous one.</summary>
    [LibraryImport("libc", EntryPoint = "umask")]
    public static partial uint Umask(uint mask);

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, [Out] byte[] buffer);
}

/// <summary>A control client's process and user, from SO_PEERCRED.</summary>
internal readonly record struct ControlPeer(int Pid, uint Uid);
